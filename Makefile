# Declic: `make demo` runs the example end to end; `make test` runs every test.
# Both set everything up on a fresh machine (virtualenv, packages, a local Kafka
# broker unless DECLIC_KAFKA_BOOTSTRAP names one) and leave no process behind.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
WITH_BROKER := bash deploy/local/with-broker.sh

.PHONY: all setup browser demo demo-web demo-console test lint unit integration chaos prometheus-check k8s-check broker-start broker-stop clean

all: test

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,plot]'
	touch $@

setup: $(BIN)/.installed
	bash deploy/local/kafka.sh fetch

# Debian's Chromium and its WebDriver, for the browser tests and the web demo only.
browser:
	bash deploy/local/chromium.sh

demo: setup
	$(WITH_BROKER) $(BIN)/declic demo

# The web SDK's demo shop: a worker and `declic gateway --demo` on the examples, until Ctrl-C.
demo-web: setup browser
	$(WITH_BROKER) bash deploy/local/demo-web.sh

# The campaign console on the examples, with a worker, until Ctrl-C (asks for an admin's
# password the first time).
demo-console: setup
	$(WITH_BROKER) bash deploy/local/demo-console.sh

lint: setup
	$(BIN)/ruff check engine tests
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit -q

integration: setup
	$(WITH_BROKER) $(BIN)/pytest tests/integration -q

# Fault scenarios on a three-node cluster of their own (started and deleted by the tests).
chaos: setup
	$(BIN)/pytest tests/chaos -q

prometheus-check:
	bash deploy/prometheus/check.sh

# deploy/k8s: every overlay rendered with kustomize and each object validated strictly
# against this Kubernetes version's schemas; the Containerfile linted; the PrometheusRule
# compared with deploy/prometheus/rules/ (deploy/k8s/check.sh; kustomize built once).
K8S_VERSION := 1.35.0
k8s-check: setup
	K8S_VERSION=$(K8S_VERSION) bash deploy/k8s/check.sh

test: setup browser lint prometheus-check k8s-check
	$(WITH_BROKER) $(BIN)/pytest tests -q --ignore=tests/chaos
	$(MAKE) --no-print-directory chaos

broker-start: setup
	bash deploy/local/kafka.sh start

broker-stop:
	bash deploy/local/kafka.sh stop

clean: broker-stop
	bash deploy/local/kafka.sh cluster-stop
	DECLIC_KAFKA_CLUSTER_RUN_DIR=.run/chaos-cluster DECLIC_KAFKA_CLUSTER_PORT=39092 \
		bash deploy/local/kafka.sh cluster-stop
	rm -rf $(VENV) .run .declic .pytest_cache .mypy_cache .ruff_cache
