# nova-vtpm-migration developer entry points. See README.md.
#
#   make demo   - the main job: Nova live-migrates a vTPM guest through this
#                 plugin's driver on real libvirt daemons (QEMU, swtpm); where
#                 libvirt daemons cannot run, says why and runs demo-dataplane
#   make demo-dataplane - the protocol on QEMU, QMP and swtpm driven directly
#                 (no Nova, no libvirt); DEMO_ARGS=--rabbit for RabbitMQ
#   make demo-nova - the scenario through Nova's API on Nova's fake libvirt
#   make test   - the whole test suite (installs what is missing first)
#   make test-libvirt - only the tests on real libvirt daemons
#   make lint   - ruff, mypy, reno lint, shellcheck
#   make bench  - benchmarks with printed ratios
#   make tpm-bench - micro-benchmark of the host TPM layer (swtpm)
#   make docs   - the Sphinx documentation (warnings are errors)
#   make campaign - full failure-and-attack campaign (fuzzing >= 100k inputs,
#                  whole fault matrix, RabbitMQ load of 50; ~20 min)
#
# Every target installs the Debian packages and the pinned virtualenv it
# needs; a second run skips what is already there.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PKG_SOURCES := $(shell find nova_vtpm_migration nova -name '*.py' 2>/dev/null) \
	setup.cfg setup.py pyproject.toml

.PHONY: all demo demo-dataplane demo-nova test lint bench tpm-bench docs campaign system venv \
	install test-libvirt \
	sample-config constraints clean

all: test

system:
	@tools/ensure-system-packages.sh

$(VENV)/.stamp-deps: constraints.txt requirements.txt test-requirements.txt
	@$(MAKE) --no-print-directory system
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing pinned Python dependencies into $(VENV)"
	@$(PIP) install -q -U 'pip>=24' wheel setuptools
	@$(PIP) install -q -c constraints.txt -r requirements.txt \
		-r test-requirements.txt
	@touch $@

$(VENV)/.stamp-pkg: $(VENV)/.stamp-deps $(PKG_SOURCES)
	@rm -rf build
	@$(PIP) install -q --no-deps --no-build-isolation --force-reinstall .
	@touch $@

venv: $(VENV)/.stamp-deps

install: system $(VENV)/.stamp-pkg

demo: install
	@TSS2_LOG=$${TSS2_LOG:-all+NONE} PYTHONWARNINGS=ignore \
		$(PY) -m tools.demo_launcher $(DEMO_ARGS)

demo-dataplane: install
	@$(PY) -m tools.demo $(DEMO_ARGS)

demo-nova: install
	@TSS2_LOG=$${TSS2_LOG:-all+NONE} PYTHONWARNINGS=ignore \
		$(PY) -m tests.nova.demo_scenario

test: install
	@tools/run-tests.sh

# tests/reallibvirt (pytest) and tests/nova/real_libvirt (stestr); both
# also run in "make test".
test-libvirt: install
	@TSS2_LOG=$${TSS2_LOG:-all+NONE} $(PY) -m pytest -p no:cacheprovider -s \
		tests/reallibvirt
	@rm -rf .stestr && $(VENV)/bin/stestr --test-path tests/nova \
		--top-dir . init >/dev/null
	@TSS2_LOG=$${TSS2_LOG:-all+NONE} $(VENV)/bin/stestr \
		--test-path tests/nova --top-dir . run --concurrency 1 \
		tests.nova.real_libvirt

campaign: install
	@tools/run-campaign.sh

lint: install
	@tools/run-lint.sh

bench: install
	@$(PY) -m tools.bench $(BENCH_ARGS)

tpm-bench: install
	@$(PY) -m tools.bench.tpm $(BENCH_ARGS)

docs: install
	@$(VENV)/bin/sphinx-build -W -b html doc/source doc/build/html

sample-config: install
	@$(VENV)/bin/oslo-config-generator \
		--config-file etc/nova-vtpm-migration-config-generator.conf

# Regenerate constraints.txt from the current, tested virtualenv.
constraints: venv
	@tools/freeze-constraints.sh > constraints.txt.new
	@mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) build dist *.egg-info .stestr .pytest_cache \
		.mypy_cache .ruff_cache
