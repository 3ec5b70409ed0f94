"""The Kubernetes manifests run Declic as its settings and the Containerfile expect.

`make k8s-check` renders the overlays and validates every object against Kubernetes'
schemas; these tests check what a schema cannot: that each pod's environment is a valid
set of Declic settings for the command it runs, that the workers keep their id and state,
that the pods are locked down, and that the placeholders refuse to run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from engine.console.users import load_users
from engine.errors import ConfigError
from engine.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = ("dev", "prod")
WORKLOADS = ("StatefulSet", "Deployment", "Job")
CONTAINERFILE = (REPO / "Containerfile").read_text(encoding="utf-8")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def base_objects() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text(encoding="utf-8"))
    return [obj for name in kustomization["resources"] for obj in documents(BASE / name)]


def workloads() -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (name, pod spec) of every Declic workload of the base."""
    for obj in base_objects():
        if obj["kind"] in WORKLOADS:
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def the(kind: str, name: str) -> dict[str, Any]:
    return next(o for o in base_objects() if o["kind"] == kind and o["metadata"]["name"] == name)


def env_file(path: Path) -> dict[str, str]:
    """Read a kustomize env file: KEY=VALUE lines, # comments."""
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value
    return pairs


def generated(directory: Path, kind: str) -> dict[str, dict[str, str]]:
    """Return the env-style data of a kustomization's config map or secret generators."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text("utf-8"))
    data: dict[str, dict[str, str]] = {}
    for generator in kustomization.get(kind, []):
        pairs: dict[str, str] = {}
        for name in generator.get("envs", []):
            pairs |= env_file(directory / name)
        for literal in generator.get("literals", []):
            key, _, value = literal.partition("=")
            pairs[key] = value
        data[generator["name"]] = {"behavior": generator.get("behavior", "create"), **pairs}
    return data


def overlay_data(overlay: str) -> dict[str, dict[str, str]]:
    """Return every generated ConfigMap's and Secret's env data once the overlay applies."""
    merged: dict[str, dict[str, str]] = {}
    for directory in (BASE, K8S / "overlays" / overlay):
        for kind in ("configMapGenerator", "secretGenerator"):
            for name, pairs in generated(directory, kind).items():
                behavior = pairs.pop("behavior")
                merged[name] = pairs if behavior != "merge" else {**merged[name], **pairs}
    return merged


def pod_environment(overlay: str, pod: dict[str, Any]) -> dict[str, str]:
    """Return the DECLIC_* variables the pod's container gets (envFrom, then env)."""
    data = overlay_data(overlay)
    (container,) = pod["containers"]
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        reference = source.get("configMapRef") or source.get("secretRef")
        environment |= data[reference["name"]]
    for variable in container.get("env", []):
        environment[variable["name"]] = variable.get("value", "from-the-pod")
    return environment


def setting_variables() -> set[str]:
    return {f"DECLIC_{name.upper()}" for name in Settings.model_fields}


def test_every_declic_variable_in_the_manifests_is_a_setting() -> None:
    texts = [
        path.read_text(encoding="utf-8")
        for path in K8S.rglob("*")
        if path.is_file() and path.suffix in {".yaml", ".env", ".md", ".py", ".sh", ""}
    ]
    named = {name for text in texts for name in re.findall(r"\bDECLIC_[A-Z0-9_]+", text)}
    assert named, "the manifests configure Declic through DECLIC_* variables"
    assert sorted(named - setting_variables()) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_pod_gets_valid_settings_for_its_command(
    overlay: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.crt"
    trustme.CA().cert_pem.write_to_path(str(ca))
    for name, pod in workloads():
        for key in [key for key in os.environ if key.startswith("DECLIC_")]:
            monkeypatch.delenv(key)
        environment = pod_environment(overlay, pod)
        for key, value in environment.items():
            # The CA is a mounted Secret: here, a real CA stands in for the one you provide.
            monkeypatch.setenv(key, str(ca) if value == "/etc/declic/kafka/ca.crt" else value)
        settings = load_settings()
        settings.check_kafka_security()
        settings.kafka_client_options()
        if name == "declic-gateway" and overlay == "dev":
            settings.check_gateway_tokens()
        if name == "declic-console":
            settings.check_console()
        command = pod["containers"][0]["args"][0]
        assert command in {"worker", "topics", "gateway", "console"}, name


def test_the_placeholders_refuse_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deployed unchanged, the base's Secrets stop the pods instead of running insecurely."""
    token = env_file(BASE / "secrets" / "gateway-token.env")["DECLIC_GATEWAY_TOKEN_SECRET"]
    monkeypatch.setenv("DECLIC_GATEWAY_TOKEN_SECRET", token)
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        load_settings().check_gateway_tokens()
    monkeypatch.delenv("DECLIC_GATEWAY_TOKEN_SECRET")
    placeholder_ca = BASE / "secrets" / "kafka-ca.crt"
    settings = load_settings(
        {
            "kafka_security_protocol": "SSL",
            "kafka_ssl_cafile": placeholder_ca,
        }
    )
    with pytest.raises(ConfigError, match="no CA certificate"):
        settings.kafka_client_options()
    # The console starts, but nobody can log in until its users file is replaced.
    assert load_users(BASE / "secrets" / "console-users.yaml") == {}


def test_workers_keep_their_id_and_state() -> None:
    worker = the("StatefulSet", "declic-worker")
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {variable["name"]: variable for variable in container["env"]}
    # Static membership: the stable pod name is the worker id.
    assert env["DECLIC_WORKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # The RocksDB state lives on the pod's own claim, not on the read-only root.
    claims = {template["metadata"]["name"] for template in worker["spec"]["volumeClaimTemplates"]}
    data_dir = Path(env["DECLIC_DATA_DIR"]["value"])
    mounts = [m for m in container["volumeMounts"] if data_dir.is_relative_to(m["mountPath"])]
    assert [mount["name"] for mount in mounts] == sorted(claims)
    assert worker["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    pdb = the("PodDisruptionBudget", "declic-worker")
    assert pdb["spec"]["selector"] == worker["spec"]["selector"]
    service = the("Service", "declic-worker")
    assert service["spec"]["clusterIP"] == "None"
    assert worker["spec"]["serviceName"] == "declic-worker"


def test_worker_probes_never_kill_a_worker_that_waits_or_recovers() -> None:
    pod = the("StatefulSet", "declic-worker")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    # /health answers 503 while Kafka is unreachable: restarting would not help.
    for probe in ("livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] != "/health", probe
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60
    # Long enough to commit, even when the broker aborts a stuck transaction first.
    default_timeout = Settings.model_fields["transaction_timeout_seconds"].default
    assert pod["terminationGracePeriodSeconds"] >= 2 * default_timeout


def test_every_pod_is_locked_down() -> None:
    uid = int(re.search(r"^USER (\d+):(\d+)$", CONTAINERFILE, re.M).group(1))  # type: ignore[union-attr]
    found = []
    for name, pod in workloads():
        found.append(name)
        # Service links would set DECLIC_GATEWAY_PORT=tcp://... and the like: Declic settings.
        assert pod["enableServiceLinks"] is False, name
        assert pod["automountServiceAccountToken"] is False, name
        context = pod["securityContext"]
        assert (context["runAsNonRoot"], context["runAsUser"]) == (True, uid), name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        for container in pod["containers"]:
            assert container["image"] == "declic", name
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}, name
            tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
            assert "emptyDir" in volumes[tmp["name"]], name
    assert sorted(found) == ["declic-console", "declic-gateway", "declic-topics", "declic-worker"]


def test_apps_reach_only_the_gateway() -> None:
    policies = [obj for obj in base_objects() if obj["kind"] == "NetworkPolicy"]
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "declic"}}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "a default-deny policy covers every Declic pod"
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                namespace = peer.get("namespaceSelector", {}).get("matchLabels", {})
                if namespace.get("kubernetes.io/metadata.name") == "ingress-nginx":
                    labels = policy["spec"]["podSelector"]["matchLabels"]
                    assert labels["app.kubernetes.io/component"] == "gateway", policy
    ingress = the("Ingress", "declic-gateway")
    backends = {
        path["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {"declic-gateway"}


def test_the_worker_pod_monitor_gives_the_job_the_alerts_expect() -> None:
    monitor = the("PodMonitor", "declic-worker")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert {"action": "replace", "targetLabel": "job", "replacement": "declic"} in endpoint[
        "relabelings"
    ]
    alerts = (REPO / "deploy" / "prometheus" / "rules" / "alerts.yml").read_text("utf-8")
    assert 'up{job="declic"}' in alerts


def test_containerfile_builds_a_wheel_and_runs_it_as_a_numeric_non_root_user() -> None:
    stages = re.findall(r"^FROM (\S+)", CONTAINERFILE, re.M)
    assert len(stages) == 2 and all(image.startswith("python:3.11") for image in stages)
    assert "pip wheel" in CONTAINERFILE and "--no-index" in CONTAINERFILE
    user = re.search(r"^USER (\S+)$", CONTAINERFILE, re.M)
    assert user is not None and re.fullmatch(r"[1-9]\d*:[1-9]\d*", user.group(1))
    assert re.search(r'^ENTRYPOINT \["declic"\]$', CONTAINERFILE, re.M)
    assert not re.search(r"(?i)^(ENV|ARG)\b.*(PASSWORD|SECRET|TOKEN)", CONTAINERFILE, re.M)


def test_worker_process_count_is_set_to_the_pod_cpu_limit() -> None:
    """Unset, the count would follow the node's CPUs where no cgroup quota shows the limit."""
    (container,) = the("StatefulSet", "declic-worker")["spec"]["template"]["spec"]["containers"]
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    limit = container["resources"]["limits"]["cpu"]
    assert env.get("DECLIC_WORKER_PROCESSES") == limit
    assert load_settings({"worker_processes": env["DECLIC_WORKER_PROCESSES"]}).worker_processes
