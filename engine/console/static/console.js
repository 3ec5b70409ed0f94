// The Declic console's progressive enhancement: every form works without it.
"use strict";

const REFRESH_MS = 5000;

// Figures refresh themselves: an element with data-refresh is replaced by the server's
// rendering of the same part, every REFRESH_MS while the page is visible.
function refreshFigures() {
  for (const box of document.querySelectorAll("[data-refresh]")) {
    const url = box.getAttribute("data-refresh");
    const tick = async () => {
      if (document.visibilityState === "visible") {
        try {
          const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
          if (response.ok && !response.redirected) box.innerHTML = await response.text();
        } catch (error) {
          // Offline for a moment: the next tick tries again; the time shown says how old.
        }
      }
      setTimeout(tick, REFRESH_MS);
    };
    setTimeout(tick, REFRESH_MS);
  }
}

// "Add" buttons of list fields copy the group's last row (of the button's data-kind, if
// any) with the next free number. Delegated: buttons inside copied rows work too.
function enableRows() {
  for (const button of document.querySelectorAll(".add-row")) button.hidden = false;
  document.addEventListener("click", (event) => {
    const button = event.target.closest(".add-row");
    const group = button && button.closest(".rows[data-prefix]");
    if (!group) return;
    const prefix = group.getAttribute("data-prefix") + ".";
    const kind = button.getAttribute("data-kind");
    const rows = Array.from(group.children).filter(
      (child) => child.classList.contains("row") && (!kind || child.getAttribute("data-kind") === kind),
    );
    const last = rows[rows.length - 1];
    const named = last && last.querySelector("[name]");
    if (!named) return;
    let next = 0;
    for (const input of group.querySelectorAll("[name]")) {
      const number = parseInt(input.name.slice(prefix.length).split(".")[0], 10);
      if (input.name.startsWith(prefix) && !Number.isNaN(number)) next = Math.max(next, number + 1);
    }
    const from = prefix + named.name.slice(prefix.length).split(".")[0] + ".";
    const to = prefix + next + ".";
    const copy = last.cloneNode(true);
    for (const node of [copy, ...copy.querySelectorAll("*")]) {
      for (const attribute of ["name", "id", "for", "data-field", "data-prefix"]) {
        const value = node.getAttribute(attribute);
        if (value) node.setAttribute(attribute, value.split(from).join(to));
      }
      if ((node.tagName === "INPUT" && node.type !== "checkbox") || node.tagName === "TEXTAREA") node.value = "";
      if (node.tagName === "SELECT") node.selectedIndex = 0;
    }
    for (const problem of copy.querySelectorAll(".field-error")) problem.remove();
    last.after(copy);
  });
}

// One message or variants: show the section the choice uses.
function enableExperiment() {
  const radios = document.querySelectorAll("input[name=experiment]");
  const show = () => {
    const chosen = document.querySelector("input[name=experiment]:checked");
    for (const section of document.querySelectorAll("[data-experiment]")) {
      section.hidden = chosen !== null && section.getAttribute("data-experiment") !== chosen.value;
    }
  };
  for (const radio of radios) radio.addEventListener("change", show);
  if (radios.length) show();
}

// The message preview follows what is typed.
function enablePreview() {
  const preview = document.querySelector("[data-preview=message]");
  if (!preview) return;
  const update = () => {
    for (const part of ["title", "body"]) {
      const input = document.querySelector(`[name="message.${part}"]`);
      const target = preview.querySelector(`[data-part=${part}]`);
      if (input && target) target.textContent = input.value;
    }
    const buttons = preview.querySelector(".preview-buttons");
    buttons.textContent = "";
    for (const input of document.querySelectorAll('[name^="message.buttons."][name$=".label"]')) {
      if (!input.value) continue;
      const span = document.createElement("span");
      span.className = "preview-button";
      span.textContent = input.value;
      buttons.append(span);
    }
  };
  document.addEventListener("input", (event) => {
    if (event.target.name && event.target.name.startsWith("message.")) update();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  refreshFigures();
  enableRows();
  enableExperiment();
  enablePreview();
});
