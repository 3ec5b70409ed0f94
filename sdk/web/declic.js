/*!
 * Declic web SDK: shows a user's in-app messages and reports what the user saw and did.
 * One file, no dependency, no build step. Served by `declic gateway` at /sdk/declic.js.
 *
 * USE
 *
 *   <script src="https://gw.example/sdk/declic.js"></script>
 *   <script>
 *     const declic = Declic.connect({
 *       gateway: "https://gw.example",   // the gateway's origin (relative URLs too)
 *       userId: "u-42",
 *       token: tokenFromYourBackend,     // a short-lived JWT whose `sub` is userId
 *       getToken: async () => (await fetch("/my/declic-token")).text(),  // optional: on 401
 *       render: "default",               // or a function(message, ui): your own UI
 *       onMessage: (message) => {},      // optional: each new message; return false: not rendered
 *       onError: (error) => {},          // optional: every problem (default: console.warn)
 *       onInteraction: (record) => {},   // optional: each interaction the gateway accepted
 *     });
 *
 * WHAT IT DOES
 *
 *   1. GET  {gateway}/v1/users/{userId}/messages (Authorization: Bearer token): the pending
 *      messages, rendered oldest first. While this read fails for a reason that passes (a
 *      gateway still starting answers 503, a busy one 429, or the network), it is tried
 *      again, after pauses growing up to 30 s, before any stream is opened.
 *   2. EventSource {gateway}/v1/users/{userId}/stream?token=...&last_event_id=...: each new
 *      delivery as it is committed. The browser reconnects by itself after a drop (sending
 *      Last-Event-ID); when the stream fails for good (a gateway still starting answers
 *      503; the gateway ends a stream when its token expires, and refuses it then: 401)
 *      the SDK reads /messages again (refreshing the token with getToken on 401) and opens
 *      a new stream with ?last_event_id= the last id it saw, after pauses growing up to
 *      30 s. A stream opened before any message was seen is followed by a read of
 *      /messages (what came before it); if that read fails, the SDK closes the stream and
 *      starts over the same way.
 *   3. A delivery is shown at most once per connect(), whichever way it arrives; a delivery
 *      whose expires_at is past is never shown (and a shown one is removed when it expires).
 *   4. POST {gateway}/v1/interactions {delivery_id, kind, element, event_id, timestamp}:
 *        impression  when the message is displayed: in the document, at least half of it in
 *                    the viewport (IntersectionObserver) and the page visible; exactly once
 *                    per delivery;
 *        click       a button, with the button's id as element;
 *        dismiss     the close button (element "close"), a button whose action is "dismiss"
 *                    (element: its id), Escape or a click outside a modal (element null).
 *      A click or a dismissal of a delivery whose impression was not logged logs it first.
 *      Network errors, 5xx and 429 are retried a few times with the same event_id.
 *
 * DEFAULT RENDERING: from the delivery's message {layout, title, body, image_url, buttons}
 *   layout "banner" (top of the page, role="status"), "toast" (bottom right, role="status")
 *   or "modal" (role="dialog", aria-modal, focus kept inside, Escape closes; one at a time).
 *   Every message element has data-declic-delivery="<delivery_id>"; its parts have
 *   data-declic-element="title" | "body" | "image" | "buttons" | "close" | "button" (a button
 *   also has data-declic-button="<button id>"). The DOM is built with textContent and
 *   setAttribute only: message data is never parsed as HTML. Only absolute http(s) image
 *   URLs are loaded. A button whose action is an http(s) URL opens it once the click is
 *   sent; other actions (app://...) go to the onAction option if given, else do nothing.
 *   Options: container (Element, default document.body), styles: false (bring your own CSS
 *   for the .declic-* classes), styleNonce (for a CSP), limit (pending messages read, 1-50).
 *
 * CUSTOM UI: render: (message, ui) => { ... }
 *   Draw the message yourself, then call ui.logImpression() once it is on screen,
 *   ui.logClick(elementId) on a click, ui.dismiss(elementId?) when the user closes it.
 *   ui.deliveryId and ui.message are the delivery's. Return an Element instead (or as
 *   well) and the SDK logs the impression when that element is displayed.
 *
 * THE HANDLE
 *   declic.logImpression(deliveryId), declic.logClick(deliveryId, elementId),
 *   declic.dismiss(deliveryId, elementId?): Promises of true (accepted) or false (see onError).
 *   declic.close(): stop listening, remove the messages it drew.
 *   declic.status: "connecting" | "open" | "reconnecting" | "closed".
 *
 * ERRORS never reach the page as exceptions: each goes to onError as an Error with a
 * `code` ("invalid_options", "unauthorized", "forbidden", "network", "http", "render",
 * "invalid_message", "unsupported", "invalid_interaction",
 * "rate_limited") and, for an HTTP answer, `status` and `detail`.
 */
(function (root) {
  "use strict";

  const VERSION = "1.0.0";
  const LAYOUTS = new Set(["banner", "modal", "toast"]);
  const FIRST_RETRY_MS = 1000;
  const MAX_RETRY_MS = 30000;
  const INTERACTION_ATTEMPTS = 5;
  const MAX_TIMER_MS = 2147483647;

  class DeclicError extends Error {
    constructor(code, message, status, detail) {
      super(message);
      this.name = "DeclicError";
      this.code = code;
      if (status !== undefined) this.status = status;
      if (detail !== undefined) this.detail = detail;
    }
  }

  // A failure that may pass by itself: the network, a rate limit, the gateway starting or down.
  function transient(error) {
    return (
      error instanceof DeclicError &&
      (error.code === "network" || error.status === 429 || (error.status || 0) >= 500)
    );
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  function uuid4() {
    const cryptoApi = root.crypto;
    if (cryptoApi && typeof cryptoApi.randomUUID === "function") return cryptoApi.randomUUID();
    const bytes = new Uint8Array(16);
    if (cryptoApi && typeof cryptoApi.getRandomValues === "function") {
      cryptoApi.getRandomValues(bytes);
    } else {
      for (let i = 0; i < 16; i += 1) bytes[i] = Math.floor(Math.random() * 256);
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  // "P-O" event ids: the later of two (same partition: the greater offset; else the newer).
  function laterEventId(current, candidate) {
    if (typeof candidate !== "string" || !/^\d+-\d+$/.test(candidate)) return current;
    if (typeof current !== "string" || !/^\d+-\d+$/.test(current)) return candidate;
    const [p1, o1] = current.split("-").map(Number);
    const [p2, o2] = candidate.split("-").map(Number);
    return p1 === p2 && o1 > o2 ? current : candidate;
  }

  function expiresInMs(delivery) {
    if (!delivery || typeof delivery.expires_at !== "string") return Infinity;
    const at = Date.parse(delivery.expires_at);
    return Number.isNaN(at) ? Infinity : at - Date.now();
  }

  function safeHttpUrl(value) {
    if (typeof value !== "string" || value === "") return null;
    let url;
    try {
      url = new URL(value); // absolute URLs only: no base
    } catch (_) {
      return null;
    }
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  }

  function text(value) {
    if (typeof value === "string") return value;
    if (typeof value === "number" && Number.isFinite(value)) return String(value);
    return null;
  }

  function element(tag, attributes, content) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
    if (content !== undefined && content !== null) node.textContent = content;
    return node;
  }

  const STYLES = `
[data-declic-root]{position:fixed;inset:0;pointer-events:none;z-index:2147483000;
  font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f}
[data-declic-root] *{box-sizing:border-box}
.declic-banners{position:absolute;top:0;left:0;right:0;display:flex;flex-direction:column}
.declic-toasts{position:absolute;right:16px;bottom:16px;display:flex;flex-direction:column;
  gap:8px;width:min(360px,calc(100vw - 32px))}
.declic-message{pointer-events:auto;position:relative;background:#fff;color:#1d1d1f;
  box-shadow:0 6px 24px rgba(0,0,0,.18)}
.declic-banner{display:flex;flex-wrap:wrap;align-items:center;gap:8px 16px;
  padding:12px 52px 12px 16px;border-bottom:1px solid #d9d9de}
.declic-toast{padding:14px 44px 14px 16px;border-radius:10px}
.declic-backdrop{pointer-events:auto;position:absolute;inset:0;background:rgba(20,20,30,.5);
  display:flex;align-items:center;justify-content:center;padding:16px}
.declic-modal{border-radius:14px;padding:24px;width:min(440px,100%);
  max-height:calc(100vh - 32px);overflow:auto}
.declic-image{display:block;max-width:100%;max-height:240px;border-radius:8px;margin:0 0 12px}
.declic-banner .declic-image{max-height:48px;margin:0}
.declic-title{margin:0 0 4px;font-size:1.05em;font-weight:650}
.declic-body{margin:0;white-space:pre-line}
.declic-text{flex:1 1 240px;min-width:0}
.declic-buttons{display:flex;flex-wrap:wrap;gap:8px;margin-top:12px}
.declic-banner .declic-buttons{margin-top:0}
.declic-button{font:inherit;border:1px solid #4b3fd6;background:#4b3fd6;color:#fff;
  border-radius:8px;padding:7px 14px;cursor:pointer}
.declic-button+.declic-button{background:#fff;color:#4b3fd6}
.declic-close{position:absolute;top:8px;right:8px;width:32px;height:32px;font-size:20px;
  line-height:1;border:0;border-radius:16px;background:transparent;color:#55555f;cursor:pointer}
.declic-close:hover,.declic-button:hover{filter:brightness(.92)}
.declic-button:focus-visible,.declic-close:focus-visible{outline:3px solid #8f86ff;
  outline-offset:2px}
`;

  /** The default UI: banners on top, toasts bottom right, one modal at a time. */
  class DefaultView {
    constructor(client, options) {
      this.client = client;
      this.container = options.container || null;
      this.styles = options.styles !== false;
      this.styleNonce = typeof options.styleNonce === "string" ? options.styleNonce : null;
      this.onAction = typeof options.onAction === "function" ? options.onAction : null;
      this.root = null;
      this.views = new Map(); // delivery id -> {node, layout, timer}
      this.modalQueue = [];
      this.activeModal = null;
      this.restoreFocus = null;
      this.ids = 0;
      this.onKeyDown = (event) => this.keyDown(event);
    }

    ensureRoot() {
      if (this.root && this.root.isConnected) return this.root;
      const host = this.container || document.body;
      if (this.styles && !document.querySelector("style[data-declic-style]")) {
        const style = element("style", { "data-declic-style": VERSION, nonce: this.styleNonce });
        style.textContent = STYLES;
        (document.head || host).appendChild(style);
      }
      this.root = element("div", { "data-declic-root": "" });
      this.banners = element("div", { class: "declic-banners" });
      this.toasts = element("div", { class: "declic-toasts" });
      this.root.append(this.banners, this.toasts);
      host.appendChild(this.root);
      return this.root;
    }

    show(delivery) {
      const message = delivery.message && typeof delivery.message === "object" ? delivery.message : {};
      const layout = LAYOUTS.has(message.layout) ? message.layout : "banner";
      this.ensureRoot();
      const node = this.build(delivery, message, layout);
      const view = { node, layout, timer: null, delivery };
      this.views.set(delivery.delivery_id, view);
      const left = expiresInMs(delivery);
      if (left < MAX_TIMER_MS) {
        view.timer = setTimeout(() => this.remove(delivery.delivery_id), Math.max(0, left));
      }
      if (layout === "modal") {
        this.modalQueue.push(view);
        this.nextModal();
      } else {
        (layout === "toast" ? this.toasts : this.banners).appendChild(node);
        this.client.watchImpression(delivery.delivery_id, node);
      }
    }

    build(delivery, message, layout) {
      const id = delivery.delivery_id;
      const serial = (this.ids += 1);
      const title = text(message.title);
      const body = text(message.body);
      const box = element("div", {
        class: `declic-message declic-${layout}`,
        "data-declic-delivery": id,
        "data-declic-layout": layout,
      });
      if (layout === "modal") {
        box.setAttribute("role", "dialog");
        box.setAttribute("aria-modal", "true");
        box.setAttribute("tabindex", "-1");
        if (title !== null) box.setAttribute("aria-labelledby", `declic-${serial}-title`);
        if (body !== null) box.setAttribute("aria-describedby", `declic-${serial}-body`);
        if (title === null) box.setAttribute("aria-label", "Message");
      } else {
        box.setAttribute("role", "status");
        box.setAttribute("aria-live", "polite");
      }
      const imageUrl = safeHttpUrl(message.image_url);
      if (imageUrl !== null) {
        const image = element("img", {
          class: "declic-image",
          "data-declic-element": "image",
          alt: text(message.image_alt) || "",
          referrerpolicy: "no-referrer",
        });
        image.src = imageUrl;
        box.appendChild(image);
      }
      const words = element("div", { class: "declic-text" });
      if (title !== null) {
        const heading = layout === "modal" ? "h2" : "p";
        words.appendChild(
          element(
            heading,
            { class: "declic-title", "data-declic-element": "title", id: `declic-${serial}-title` },
            title,
          ),
        );
      }
      if (body !== null) {
        words.appendChild(
          element(
            "p",
            { class: "declic-body", "data-declic-element": "body", id: `declic-${serial}-body` },
            body,
          ),
        );
      }
      box.appendChild(words);
      const buttons = Array.isArray(message.buttons) ? message.buttons : [];
      const row = element("div", { class: "declic-buttons", "data-declic-element": "buttons" });
      for (const spec of buttons) {
        if (!spec || typeof spec !== "object") continue;
        const buttonId = text(spec.id);
        const label = text(spec.label) ?? buttonId;
        if (buttonId === null || label === null) continue;
        const button = element(
          "button",
          {
            type: "button",
            class: "declic-button",
            "data-declic-element": "button",
            "data-declic-button": buttonId,
          },
          label,
        );
        button.addEventListener("click", () => this.pressed(id, buttonId, spec.action));
        row.appendChild(button);
      }
      if (row.childElementCount > 0) box.appendChild(row);
      const close = element(
        "button",
        { type: "button", class: "declic-close", "data-declic-element": "close", "aria-label": "Close" },
        "\u00d7",
      );
      close.addEventListener("click", () => this.client.dismiss(id, "close"));
      box.appendChild(close);
      if (layout !== "modal") return box;
      const backdrop = element("div", { class: "declic-backdrop", "data-declic-element": "backdrop" });
      backdrop.addEventListener("click", (event) => {
        if (event.target === backdrop) this.client.dismiss(id, null);
      });
      backdrop.appendChild(box);
      return backdrop;
    }

    pressed(deliveryId, buttonId, action) {
      if (action === "dismiss") {
        this.client.dismiss(deliveryId, buttonId);
        return;
      }
      const view = this.views.get(deliveryId);
      const delivery = view ? view.delivery : null;
      const url = safeHttpUrl(action);
      const sent = this.client.logClick(deliveryId, buttonId, { keepalive: url !== null });
      this.remove(deliveryId);
      if (this.onAction) {
        try {
          this.onAction(action, delivery, buttonId);
        } catch (error) {
          this.client.report(new DeclicError("render", `onAction failed: ${error}`));
        }
      } else if (url !== null) {
        // keepalive lets the click reach the gateway while the page unloads.
        Promise.race([sent, sleep(300)]).then(() => root.location.assign(url));
      }
    }

    nextModal() {
      if (this.activeModal || this.modalQueue.length === 0) return;
      const view = this.modalQueue.shift();
      this.activeModal = view;
      this.restoreFocus = document.activeElement;
      this.root.appendChild(view.node);
      document.addEventListener("keydown", this.onKeyDown, true);
      const dialog = view.node.querySelector('[role="dialog"]');
      const first = dialog.querySelector(".declic-button") || dialog;
      try {
        first.focus({ preventScroll: true });
      } catch (_) {
        /* not focusable: nothing to do */
      }
      this.client.watchImpression(view.delivery.delivery_id, dialog);
    }

    keyDown(event) {
      const view = this.activeModal;
      if (!view) return;
      if (event.key === "Escape") {
        event.stopPropagation();
        event.preventDefault();
        this.client.dismiss(view.delivery.delivery_id, null);
        return;
      }
      if (event.key !== "Tab") return;
      const focusable = Array.from(view.node.querySelectorAll("button"));
      if (focusable.length === 0) return;
      const first = focusable[0];
      const last = focusable[focusable.length - 1];
      const inside = view.node.contains(document.activeElement);
      if (event.shiftKey && (document.activeElement === first || !inside)) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && (document.activeElement === last || !inside)) {
        event.preventDefault();
        first.focus();
      }
    }

    has(deliveryId) {
      return this.views.has(deliveryId);
    }

    remove(deliveryId) {
      const view = this.views.get(deliveryId);
      if (!view) return;
      this.views.delete(deliveryId);
      clearTimeout(view.timer);
      this.client.unwatchImpression(deliveryId);
      view.node.remove();
      const queued = this.modalQueue.indexOf(view);
      if (queued >= 0) this.modalQueue.splice(queued, 1);
      if (this.activeModal === view) {
        this.activeModal = null;
        document.removeEventListener("keydown", this.onKeyDown, true);
        const previous = this.restoreFocus;
        this.restoreFocus = null;
        if (previous && previous.isConnected && typeof previous.focus === "function") {
          try {
            previous.focus({ preventScroll: true });
          } catch (_) {
            /* ignore */
          }
        }
        this.nextModal();
      }
    }

    clear() {
      for (const deliveryId of Array.from(this.views.keys())) this.remove(deliveryId);
      if (this.root) this.root.remove();
      this.root = null;
    }
  }

  class Client {
    constructor(options) {
      this.options = options;
      this.status = "connecting";
      this.closed = false;
      this.token = typeof options.token === "string" && options.token ? options.token : null;
      this.getToken = typeof options.getToken === "function" ? options.getToken : null;
      this.onMessage = typeof options.onMessage === "function" ? options.onMessage : null;
      this.onError = typeof options.onError === "function" ? options.onError : null;
      this.onInteraction = typeof options.onInteraction === "function" ? options.onInteraction : null;
      this.limit = Math.min(50, Math.max(1, Number.parseInt(options.limit, 10) || 20));
      this.seen = new Set(); // deliveries received: shown, being shown or skipped
      this.impressed = new Set();
      this.clicked = new Set();
      this.dismissed = new Set();
      this.watchers = new Map(); // delivery id -> stop watching its visibility
      this.lastEventId = null;
      this.source = null;
      this.retryMs = FIRST_RETRY_MS;
      this.retryTimer = null;
      this.refreshing = null;
      this.outage = false;
      this.view = null;
      this.custom = null;
    }

    // --- lifecycle ------------------------------------------------------------------------

    validate() {
      const o = this.options;
      if (typeof o.gateway !== "string") return "gateway: the gateway's URL is required";
      try {
        this.gateway = new URL(o.gateway, root.location ? root.location.href : undefined).href.replace(/\/+$/, "");
      } catch (_) {
        return `gateway: not a URL: ${o.gateway}`;
      }
      if (typeof o.userId !== "string" || o.userId === "") return "userId: a non-empty string is required";
      if (!this.token && !this.getToken) return "token or getToken is required";
      if (o.render === undefined || o.render === null || o.render === "default") {
        this.view = new DefaultView(this, o);
      } else if (typeof o.render === "function") {
        this.custom = o.render;
      } else {
        return 'render: "default" or a function(message, ui)';
      }
      if (o.container !== undefined && !(o.container instanceof Element)) {
        return "container: an Element";
      }
      if (typeof fetch !== "function") return "this browser has no fetch()";
      return null;
    }

    async start() {
      await null; // report problems after connect() returned its handle
      const problem = this.validate();
      if (problem !== null) {
        this.status = "closed";
        this.closed = true;
        this.report(new DeclicError(problem.startsWith("this browser") ? "unsupported" : "invalid_options", `Declic.connect: ${problem}`));
        return;
      }
      this.userPath = `/v1/users/${encodeURIComponent(this.options.userId)}`;
      try {
        if (!this.token) await this.refreshToken();
        await this.readPending();
      } catch (error) {
        this.report(error);
        if (this.fatal(error)) return this.stop();
        if (transient(error)) {
          // The gateway is starting (503), busy (429) or unreachable: a stream opened now
          // would start live, without what is pending. Read again first, after a pause.
          this.outage = true;
          this.status = "reconnecting";
          return this.scheduleReconnect(error.retryAfterMs);
        }
      }
      this.openStream();
    }

    close() {
      this.stop();
      if (this.view) this.view.clear();
    }

    stop() {
      this.closed = true;
      this.status = "closed";
      clearTimeout(this.retryTimer);
      if (this.source) this.source.close();
      this.source = null;
      for (const unwatch of this.watchers.values()) unwatch();
      this.watchers.clear();
    }

    fatal(error) {
      return (
        error instanceof DeclicError &&
        (error.code === "forbidden" || (error.code === "unauthorized" && !this.getToken))
      );
    }

    report(error) {
      const problem = error instanceof Error ? error : new DeclicError("http", String(error));
      try {
        if (this.onError) this.onError(problem);
        else if (root.console) root.console.warn("declic:", problem.message);
      } catch (_) {
        /* the page's handler failed: nothing more to do */
      }
    }

    // --- HTTP -----------------------------------------------------------------------------

    refreshToken() {
      if (!this.getToken) {
        return Promise.reject(
          new DeclicError("unauthorized", "the gateway refused the token, and no getToken was given", 401),
        );
      }
      if (!this.refreshing) {
        this.refreshing = Promise.resolve()
          .then(() => this.getToken())
          .then((token) => {
            if (typeof token !== "string" || token === "") {
              throw new DeclicError("unauthorized", "getToken gave no token");
            }
            this.token = token;
            return token;
          })
          .catch((error) => {
            throw error instanceof DeclicError
              ? error
              : new DeclicError("unauthorized", `getToken failed: ${error}`);
          })
          .finally(() => {
            this.refreshing = null;
          });
      }
      return this.refreshing;
    }

    async request(method, path, body, extra) {
      const options = extra || {};
      let response;
      try {
        response = await fetch(this.gateway + path, {
          method,
          headers: Object.assign(
            { Authorization: `Bearer ${this.token}`, Accept: "application/json" },
            body === undefined ? {} : { "Content-Type": "application/json" },
          ),
          body: body === undefined ? undefined : JSON.stringify(body),
          credentials: "omit",
          cache: "no-store",
          keepalive: Boolean(options.keepalive),
        });
      } catch (error) {
        throw new DeclicError("network", `${method} ${path}: the gateway is unreachable (${error})`);
      }
      if (response.status === 401 && !options.refreshed && this.getToken) {
        await this.refreshToken();
        return this.request(method, path, body, Object.assign({}, options, { refreshed: true }));
      }
      let data = null;
      try {
        data = await response.json();
      } catch (_) {
        data = null;
      }
      if (response.ok) return data;
      const code = data && typeof data.error === "string" ? data.error : "http";
      const detail = data && data.detail !== undefined ? data.detail : undefined;
      const error = new DeclicError(
        code,
        `${method} ${path}: ${response.status} ${code}${detail ? `: ${detail}` : ""}`,
        response.status,
        detail,
      );
      const retryAfter = Number.parseFloat(response.headers.get("Retry-After") || "");
      if (Number.isFinite(retryAfter)) error.retryAfterMs = retryAfter * 1000;
      throw error;
    }

    async readPending() {
      const data = await this.request("GET", `${this.userPath}/messages?limit=${this.limit}`);
      if (!data || !Array.isArray(data.messages)) {
        throw new DeclicError("invalid_message", "GET messages: no messages list in the answer");
      }
      this.lastEventId = laterEventId(this.lastEventId, data.last_event_id);
      for (const delivery of data.messages.slice().reverse()) {
        this.lastEventId = laterEventId(this.lastEventId, delivery && delivery.event_id);
        this.receive(delivery);
      }
    }

    // --- the stream -------------------------------------------------------------------------

    openStream() {
      if (this.closed) return;
      if (typeof root.EventSource !== "function") {
        this.report(new DeclicError("unsupported", "this browser has no EventSource"));
        return;
      }
      const query = new URLSearchParams({ token: this.token });
      if (this.lastEventId) query.set("last_event_id", this.lastEventId);
      const source = new root.EventSource(`${this.gateway}${this.userPath}/stream?${query}`);
      this.source = source;
      this.status = "connecting";
      source.addEventListener("open", () => {
        if (this.source !== source) return;
        this.status = "open";
        if (this.lastEventId) {
          this.settled();
          return;
        }
        // Without a position, the stream starts live: read what came before it. If that
        // read fails, what is pending would stay unseen: start over, reading first.
        this.readPending().then(
          () => {
            if (this.source === source) this.settled();
          },
          (error) => {
            if (this.source !== source) return;
            this.report(error);
            source.close();
            this.source = null;
            if (this.fatal(error)) return this.stop();
            this.outage = true;
            this.status = "reconnecting";
            this.scheduleReconnect(error.retryAfterMs);
          },
        );
      });
      source.addEventListener("delivery", (event) => {
        if (this.source !== source) return;
        this.lastEventId = laterEventId(this.lastEventId, event.lastEventId);
        let delivery;
        try {
          delivery = JSON.parse(event.data);
        } catch (error) {
          this.report(new DeclicError("invalid_message", `stream: a delivery that is no JSON (${error})`));
          return;
        }
        this.receive(delivery);
      });
      source.addEventListener("error", () => {
        if (this.source !== source) return;
        if (source.readyState === root.EventSource.CLOSED) {
          source.close();
          this.source = null;
          this.status = "reconnecting";
          this.scheduleReconnect();
        } else {
          this.status = "connecting"; // the browser reconnects by itself, with Last-Event-ID
        }
      });
    }

    // The stream is open and what came before it read: the next outage starts with short pauses.
    settled() {
      this.retryMs = FIRST_RETRY_MS;
      this.outage = false;
    }

    scheduleReconnect(minimumMs) {
      if (this.closed) return;
      const delay = Math.max(minimumMs || 0, this.retryMs * (0.5 + Math.random() / 2));
      this.retryMs = Math.min(MAX_RETRY_MS, this.retryMs * 2);
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.reconnect(), delay);
    }

    async reconnect() {
      if (this.closed) return;
      // EventSource hides why it failed: reading /messages tells (and refreshes an expired
      // token on 401), and shows what the stream missed meanwhile.
      try {
        await this.readPending();
      } catch (error) {
        if (!this.outage || error.code !== "network") this.report(error);
        this.outage = true;
        if (this.fatal(error)) return this.stop();
        return this.scheduleReconnect(error.retryAfterMs);
      }
      this.openStream();
    }

    // --- messages ---------------------------------------------------------------------------

    receive(delivery) {
      if (this.closed) return;
      if (!delivery || typeof delivery !== "object" || typeof delivery.delivery_id !== "string") {
        this.report(new DeclicError("invalid_message", "a delivery without delivery_id"));
        return;
      }
      const id = delivery.delivery_id;
      if (this.seen.has(id)) return;
      this.seen.add(id);
      if (expiresInMs(delivery) <= 0) return; // received too late: never shown
      if (this.onMessage) {
        try {
          if (this.onMessage(delivery) === false) return;
        } catch (error) {
          this.report(new DeclicError("render", `onMessage failed: ${error}`));
        }
      }
      this.whenBody(() => this.render(delivery));
    }

    whenBody(action) {
      if (document.body) action();
      else document.addEventListener("DOMContentLoaded", action, { once: true });
    }

    render(delivery) {
      if (this.closed) return;
      const id = delivery.delivery_id;
      if (this.view) {
        try {
          this.view.show(delivery);
        } catch (error) {
          this.report(new DeclicError("render", `rendering ${id} failed: ${error}`));
        }
        return;
      }
      const ui = Object.freeze({
        deliveryId: id,
        message: delivery,
        logImpression: () => this.logImpression(id),
        logClick: (elementId) => this.logClick(id, elementId),
        dismiss: (elementId) => this.dismiss(id, elementId),
      });
      let result;
      try {
        result = this.custom(delivery, ui);
      } catch (error) {
        this.report(new DeclicError("render", `render(${id}) failed: ${error}`));
        return;
      }
      Promise.resolve(result).then(
        (node) => {
          if (node instanceof Element) this.watchImpression(id, node);
        },
        (error) => this.report(new DeclicError("render", `render(${id}) failed: ${error}`)),
      );
    }

    // Log the impression once the element is displayed: attached, at least half in the
    // viewport (or covering half of it), and the page visible.
    watchImpression(deliveryId, node) {
      if (this.impressed.has(deliveryId) || this.watchers.has(deliveryId)) return;
      let inView = false;
      let observer = null;
      const check = () => {
        if (inView && node.isConnected && document.visibilityState === "visible") {
          stop();
          this.logImpression(deliveryId);
        }
      };
      const stop = () => {
        if (observer) observer.disconnect();
        document.removeEventListener("visibilitychange", check);
        this.watchers.delete(deliveryId);
      };
      this.watchers.set(deliveryId, stop);
      document.addEventListener("visibilitychange", check);
      if (typeof root.IntersectionObserver === "function") {
        observer = new root.IntersectionObserver(
          (entries) => {
            for (const entry of entries) {
              const viewport = entry.rootBounds;
              const covers =
                viewport !== null &&
                entry.intersectionRect.width * entry.intersectionRect.height >=
                  0.5 * viewport.width * viewport.height;
              inView = entry.isIntersecting && (entry.intersectionRatio >= 0.5 || covers);
            }
            check();
          },
          { threshold: [0, 0.25, 0.5, 0.75, 1] },
        );
        observer.observe(node);
      } else {
        requestAnimationFrame(() => {
          inView = true;
          check();
        });
      }
    }

    unwatchImpression(deliveryId) {
      const stop = this.watchers.get(deliveryId);
      if (stop) stop();
    }

    // --- interactions -----------------------------------------------------------------------

    logImpression(deliveryId) {
      const id = String(deliveryId);
      if (this.impressed.has(id)) return Promise.resolve(false);
      this.impressed.add(id);
      this.unwatchImpression(id);
      return this.interaction(id, "impression", null);
    }

    logClick(deliveryId, elementId, extra) {
      const id = String(deliveryId);
      const element = elementId === undefined || elementId === null ? null : String(elementId);
      const impression = this.impressed.has(id) ? null : this.logImpression(id);
      return Promise.resolve(impression).then(() =>
        this.interaction(id, "click", element, extra),
      );
    }

    dismiss(deliveryId, elementId) {
      const id = String(deliveryId);
      if (this.view) this.view.remove(id);
      if (this.dismissed.has(id)) return Promise.resolve(false);
      this.dismissed.add(id);
      const element = elementId === undefined || elementId === null ? null : String(elementId);
      const impression = this.impressed.has(id) ? null : this.logImpression(id);
      return Promise.resolve(impression).then(() => this.interaction(id, "dismiss", element));
    }

    async interaction(deliveryId, kind, element, extra) {
      const record = {
        delivery_id: deliveryId,
        kind,
        element,
        event_id: uuid4(), // the same on every retry
        timestamp: new Date().toISOString(),
      };
      let pause = 500;
      for (let attempt = 1; ; attempt += 1) {
        try {
          await this.request("POST", "/v1/interactions", record, extra);
          if (this.onInteraction) {
            try {
              this.onInteraction(Object.assign({}, record));
            } catch (error) {
              this.report(new DeclicError("render", `onInteraction failed: ${error}`));
            }
          }
          return true;
        } catch (error) {
          if (!transient(error) || attempt >= INTERACTION_ATTEMPTS || this.closed) {
            this.report(error);
            return false;
          }
          await sleep(Math.max(pause, error.retryAfterMs || 0));
          pause *= 2;
        }
      }
    }
  }

  function connect(options) {
    const client = new Client(options && typeof options === "object" ? options : {});
    client.start().catch((error) => client.report(error));
    return Object.freeze({
      logImpression: (deliveryId) => client.logImpression(deliveryId),
      logClick: (deliveryId, elementId) => client.logClick(deliveryId, elementId),
      dismiss: (deliveryId, elementId) => client.dismiss(deliveryId, elementId),
      close: () => client.close(),
      get status() {
        return client.status;
      },
      get lastEventId() {
        return client.lastEventId;
      },
    });
  }

  root.Declic = Object.freeze({ connect, version: VERSION, DeclicError });
})(typeof globalThis !== "undefined" ? globalThis : window);
