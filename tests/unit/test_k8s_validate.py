"""deploy/k8s/validate.py refuses what a Kubernetes API server would drop or refuse.

kubectl apply prunes unknown fields of custom resources without a word, so a misspelt
PodMonitor field would silently scrape nothing: the validator treats every field a schema
does not name as an error, for Kubernetes' kinds and for CRDs alike.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.35.0"

# A CRD as controller-gen writes it (YAML 1.1: the bare `=` of an enum is a string).
CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer}
              operator:
                type: string
                enum:
                - =
                - "!="
              labels:
                type: object
                additionalProperties: {type: string}
              extra:
                type: object
                x-kubernetes-preserve-unknown-fields: true
                properties:
                  known: {type: string}
"""


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_validate", REPO / "deploy/k8s/validate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> Any:
    module = load()
    crd = tmp_path_factory.mktemp("crds") / "widgets.yaml"
    crd.write_text(CRD, encoding="utf-8")
    return module.Validator(K8S_VERSION, module.crd_schemas([crd]))


WIDGET: dict[str, Any] = {
    "apiVersion": "example.com/v1",
    "kind": "Widget",
    "metadata": {"name": "w", "labels": {"a": "b"}},
    "spec": {"size": 3, "operator": "=", "labels": {"any": "x"}, "extra": {"free": 1}},
}

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "d"},
    "spec": {
        "selector": {"matchLabels": {"app": "d"}},
        "template": {
            "metadata": {"labels": {"app": "d"}},
            "spec": {"containers": [{"name": "c", "image": "declic"}]},
        },
    },
}


def edited(obj: dict[str, Any], path: list[str | int], value: Any) -> dict[str, Any]:
    result = copy.deepcopy(obj)
    target = result
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return result


def test_valid_objects_pass(validator: Any) -> None:
    assert validator.problems(WIDGET) == []
    assert validator.problems(DEPLOYMENT) == []


def test_an_unknown_field_of_a_custom_resource_is_an_error(validator: Any) -> None:
    problems = validator.problems(edited(WIDGET, ["spec", "sise"], 3))
    assert len(problems) == 1 and "'sise' was unexpected" in problems[0]
    assert problems[0].startswith("spec:")


def test_a_misspelt_metadata_field_of_a_custom_resource_is_an_error(validator: Any) -> None:
    problems = validator.problems(edited(WIDGET, ["metadata", "lables"], {"a": "b"}))
    assert len(problems) == 1 and problems[0].startswith("metadata:")


def test_maps_and_open_objects_stay_open(validator: Any) -> None:
    widget = edited(WIDGET, ["spec", "extra"], {"known": "k", "anything": [1, 2]})
    assert validator.problems(widget) == []


def test_wrong_types_and_values_of_a_custom_resource_are_errors(validator: Any) -> None:
    assert validator.problems(edited(WIDGET, ["spec", "size"], "three")) != []
    assert validator.problems(edited(WIDGET, ["spec", "operator"], "~")) != []


def test_an_unknown_field_of_a_kubernetes_object_is_an_error(validator: Any) -> None:
    path: list[str | int] = ["spec", "template", "spec", "containers", 0, "imagePullPolicyy"]
    problems = validator.problems(edited(DEPLOYMENT, path, "Always"))
    assert len(problems) == 1 and "'imagePullPolicyy' was unexpected" in problems[0]


def test_a_kind_without_a_schema_is_an_error(validator: Any) -> None:
    gadget = {**WIDGET, "kind": "Gadget"}
    assert validator.problems(gadget) != []
