# Mensajero: the two commands a newcomer needs are `make run` and `make test`.

VENV    ?= .venv
# The first Python 3.11+ that actually runs (pyenv shims may exist for versions not installed).
PYTHON  ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
             $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 \
             && command -v $$p && break; done)
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp

.PHONY: install run test chaos lint format bench clean check-deps deploy-check k8s-rules

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Mensajero needs Python 3.11 or newer (none found on PATH)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

check-deps: install
	@$(PY) deploy/run_local.py --check

## run: every service, plus the sandbox (local Meta) and moto (local SES). Ctrl-C stops all.
run: install
	@$(PY) deploy/run_local.py

## test: the whole suite against real RabbitMQ and PostgreSQL.
test: check-deps
	$(PY) -m pytest

## chaos: the fault suite (tests/chaos/suite.py, a few minutes) on a RabbitMQ node and a
## PostgreSQL cluster of its own (never the shared ones); prints lost/duplicated per fault.
## chaos: the fault suite on a broker and database of its own, then a longer fuzzing run.
chaos: install
	$(PY) -m pytest tests/chaos/suite.py
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-1000} $(PY) -m pytest tests/gateway/test_fuzz.py tests/system/test_poison.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## deploy-check: the Kubernetes overlays, the Compose file, the alert rules (with their unit
## tests) and the dashboard's queries, checked by kubectl kustomize, kubernetes-validate,
## check-jsonschema and promtool (Debian: apt-get install prometheus).
deploy-check: install
	$(PY) deploy/check.py

## k8s-rules: the monitoring component's PrometheusRule, generated from deploy/prometheus/rules.yml.
k8s-rules: install
	$(PY) deploy/check.py prometheus-rule > deploy/k8s/components/monitoring/prometheusrule.yaml

## bench: prints the performance figures (gateway, sender, handoff with 1 and 2 replicas,
## notifier, sandbox).
bench: check-deps
	$(PY) -m bench

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
