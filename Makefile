# aistack developer entry points. `make help` lists them.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help deps venv lint test test-unit test-e2e bench gauntlet demo demo-down deb rpm clean

help:
	@echo "make deps       install the host packages the build and tests need (apt, root)"
	@echo "make venv       create .venv with the agent and its dev tools (Debian 13 versions)"
	@echo "make test       all tests: lint (ruff, mypy --strict), unit tests, e2e testbed suite"
	@echo "make test-unit  unit tests only (no root, no testbed)"
	@echo "make test-e2e   the e2e suite in the systemd + Podman testbed (root)"
	@echo "make bench      API latency, RSS; kill -9 detection; real-software recovery; gauntlet"
	@echo "make gauntlet   100 seeded random faults against the stack in the testbed (root)"
	@echo "make demo       boot the testbed, install and start the agent, show its /status"
	@echo "make demo-down  stop the demo testbed"
	@echo "make deb rpm    build dist/aistack_*.deb and dist/aistack-*.rpm (nfpm)"

# Debian packages: pystemd builds against libsystemd; promtool lints /metrics;
# debootstrap + systemd-nspawn run the testbed; lintian, rpmlint, rpm, shellcheck check
# the packages; systemd (for systemd-analyze) scores the unit's hardening; postgresql is
# the real server the backup tests dump and restore; dbus-daemon runs the private bus
# the systemd-signal tests talk to.
deps:
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	  libsystemd-dev pkg-config gcc prometheus debootstrap systemd-container \
	  iproute2 util-linux ca-certificates lintian rpmlint rpm shellcheck systemd \
	  postgresql dbus-daemon chromium prometheus-alertmanager zsh ansible-core ansible-lint openssh-client

$(STAMP): pyproject.toml constraints-debian13.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q cython
	$(BIN)/pip install -q -c constraints-debian13.txt -e '.[dev]'
	touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check agent tests benchmarks packaging/docs.py
	$(BIN)/ruff format --check agent tests benchmarks packaging/docs.py
	$(BIN)/mypy agent

test-unit: $(STAMP)
	$(BIN)/pytest -m "not e2e" --ignore=tests/e2e

# pytest exits 5 when it collects nothing: that is a failure here, never a pass.
# Two sessions side by side, each with its own guest, of about the same length: the
# second lane (mostly waiting: building the real images from PyPI and their starts, a
# real Prometheus and Alertmanager, extra services, the three-host fleet) and the rest of
# the suite. The lane's output follows the suite's; both must pass.
LANE := $(wildcard tests/e2e/test_real_software.py tests/e2e/test_prometheus.py \
  tests/e2e/test_extra_services.py tests/e2e/test_fleet.py)
test-e2e: $(STAMP)
	@mkdir -p build; \
	$(BIN)/pytest -m e2e $(LANE) > build/e2e-lane.log 2>&1 & \
	lane=$$!; \
	$(BIN)/pytest -m e2e tests/e2e $(addprefix --ignore=,$(LANE)); rest=$$?; \
	wait $$lane; real=$$?; \
	echo "== the second lane ($(LANE))"; \
	cat build/e2e-lane.log; \
	echo "== e2e: suite exit $$rest, second lane exit $$real"; \
	[ $$rest -eq 0 ] && [ $$real -eq 0 ]

test: lint test-unit test-e2e

# The benchmarks, then the full fault gauntlet. GAUNTLET_BUDGET=SECONDS stops the
# gauntlet from drawing new faults after that long (.ci/run passes what is left of its
# 45 minutes); GAUNTLET_BUDGET=skip leaves it out, REAL_RECOVERY=skip the real-software
# recovery benchmark (about 6 minutes; make test prints the same figures from its lane).
bench: $(STAMP)
	$(BIN)/python benchmarks/api.py
	$(BIN)/python benchmarks/detection.py
	@if [ "$(REAL_RECOVERY)" = skip ]; then echo "real_recovery: skipped (REAL_RECOVERY=skip)"; \
	else $(BIN)/python benchmarks/real_recovery.py; fi
	@if [ "$(GAUNTLET_BUDGET)" = skip ]; then echo "gauntlet: skipped (GAUNTLET_BUDGET=skip)"; \
	else $(MAKE) --no-print-directory gauntlet; fi

# FAULTS=20 runs each kind of fault once; SEED picks the sequence.
gauntlet: $(STAMP)
	$(BIN)/python benchmarks/gauntlet.py --faults $(or $(FAULTS),100) --seed $(or $(SEED),1) \
	  --budget $(or $(GAUNTLET_BUDGET),0)

demo: $(STAMP)
	$(BIN)/python -m tests.e2e.demo up

demo-down: $(STAMP)
	$(BIN)/python -m tests.e2e.demo down

deb: $(STAMP)
	bash packaging/build.sh deb

rpm: $(STAMP)
	bash packaging/build.sh rpm

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist *.egg-info
