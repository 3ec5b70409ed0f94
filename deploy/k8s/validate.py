"""Render kustomize overlays and validate every object, strictly (unknown fields are errors).

Kubernetes' own kinds are checked with kubernetes-validate against the schemas of one named
Kubernetes version. The Prometheus Operator's kinds (PodMonitor, PrometheusRule, ...) are
not in those schemas: they are checked against the openAPIV3Schema of their
CustomResourceDefinitions (the operator's CRD YAML files), made strict the
way kubernetes-validate makes its own (no property a schema does not name), with
`metadata` checked as Kubernetes' ObjectMeta.

    python deploy/k8s/validate.py --kustomize KUSTOMIZE --kubernetes-version 1.35.0 \\
        --crd monitoring.coreos.com_podmonitors.yaml --crd ... OVERLAY...
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import yaml

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def strict(schema: Any) -> Any:
    """Return a copy of an OpenAPI v3 schema where objects refuse properties they do not name.

    Objects that keep unknown fields on purpose (x-kubernetes-preserve-unknown-fields) or
    describe maps (additionalProperties already set) stay as they are.
    """
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    copy = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in copy
        and "additionalProperties" not in copy
        and not copy.get("x-kubernetes-preserve-unknown-fields")
    ):
        copy["additionalProperties"] = False
    return copy


class _CrdLoader(yaml.SafeLoader):
    """YAML 1.1 as controller-gen writes it: a plain `=` (in enums) is a string."""


def _plain_string(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


_CrdLoader.add_constructor("tag:yaml.org,2002:value", _plain_string)


def crd_schemas(paths: Iterable[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    """Return the strict schema of every served version of the CRDs in these files.

    Keyed by (apiVersion, kind), e.g. ("monitoring.coreos.com/v1", "PodMonitor").
    """
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in paths:
        for crd in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_CrdLoader):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    schema = strict(version["schema"]["openAPIV3Schema"])
                    schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def object_meta_schema(kubernetes_version: str) -> dict[str, Any]:
    """Return Kubernetes' strict ObjectMeta schema, with its references, for that version."""
    minor = ".".join(kubernetes_version.lstrip("v").split(".")[:2])
    root = resources.files(kubernetes_validate) / "kubernetes-json-schema"
    for entry in root.iterdir():
        if entry.name.startswith(f"v{minor}.") and entry.name.endswith("-local-strict"):
            definitions = json.loads((entry / "_definitions.json").read_text(encoding="utf-8"))
            return {
                "$schema": definitions["$schema"],
                "$defs": definitions["$defs"],
                "$ref": f"#/$defs/{OBJECT_META}",
            }
    raise SystemExit(f"validate.py: error: kubernetes-validate has no schemas for {minor}")


def _errors(validator: Any, instance: Any, prefix: str = "") -> list[str]:
    found = sorted(validator.iter_errors(instance), key=lambda error: list(error.path))
    return [
        f"{'.'.join([prefix, *map(str, error.path)]).strip('.') or '(root)'}: {error.message}"
        for error in found
    ]


class Validator:
    """Validates objects of Kubernetes' kinds and of the CRDs it was given, strictly."""

    def __init__(self, kubernetes_version: str, crds: dict[tuple[str, str], dict[str, Any]]):
        self.kubernetes_version = kubernetes_version
        self.crds = {key: jsonschema.Draft7Validator(schema) for key, schema in crds.items()}
        self.object_meta = jsonschema.Draft202012Validator(object_meta_schema(kubernetes_version))

    def problems(self, obj: dict[str, Any]) -> list[str]:
        """Return what is wrong with one object (empty when it is valid)."""
        key = (obj.get("apiVersion", ""), obj.get("kind", ""))
        if key in self.crds:
            meta = obj.get("metadata", {})
            return _errors(self.crds[key], obj) + _errors(self.object_meta, meta, "metadata")
        try:
            kubernetes_validate.validate(obj, self.kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path) or "(root)"
            return [f"{path}: {error.message}"]
        except kubernetes_validate.SchemaNotFoundError as error:
            return [error.message]
        return []


def render(kustomize: str, overlay: Path) -> list[dict[str, Any]]:
    """Return the objects `kustomize build overlay` gives."""
    result = subprocess.run(
        [kustomize, "build", str(overlay)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"validate.py: error: kustomize build {overlay}:\n{result.stderr}")
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


def name_of(obj: dict[str, Any]) -> str:
    """Return `Kind/name` of an object, for messages."""
    return f"{obj.get('kind', '?')}/{obj.get('metadata', {}).get('name', '?')}"


def check(validator: Validator, objects: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Yield one line per problem of these objects."""
    for obj in objects:
        for problem in validator.problems(obj):
            yield f"{name_of(obj)}: {problem}"


def main(argv: list[str] | None = None) -> int:
    """Validate each overlay's objects; exit 1 if any object is invalid."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kustomize", required=True, help="the kustomize binary")
    parser.add_argument(
        "--crd", type=Path, action="append", required=True, help="a CRD YAML file (repeat)"
    )
    parser.add_argument("--kubernetes-version", required=True, help="e.g. 1.35.0")
    parser.add_argument("overlays", nargs="+", type=Path)
    args = parser.parse_args(argv)
    crds = crd_schemas(args.crd)
    if not crds:
        raise SystemExit("validate.py: error: no CustomResourceDefinition in the --crd files")
    validator = Validator(args.kubernetes_version, crds)
    failed = False
    for overlay in args.overlays:
        objects = render(args.kustomize, overlay)
        if not objects:
            raise SystemExit(f"validate.py: error: {overlay} renders no object")
        problems = list(check(validator, objects))
        for problem in problems:
            print(f"{overlay}: {problem}", file=sys.stderr)
        failed = failed or bool(problems)
        kinds = sorted({obj["kind"] for obj in objects})
        print(
            f"validate.py: {overlay}: {len(objects)} objects, {len(problems)} problems "
            f"(Kubernetes {args.kubernetes_version}, strict; {', '.join(kinds)})",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
