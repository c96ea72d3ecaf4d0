# edgemoe: `make demo` runs the main job, `make test` the tests; both set up what they need.
PYTHON  ?= python3.11
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
DEB_PACKAGES := iverilog yosys g++
PYTEST_WORKERS ?= 2

.PHONY: all demo test test-slow fuzz sim sim-report sim-kernel bench report explore setup deb clean help

all: test

help:
	@echo "make demo       the main job: m3vit-tiny-cityscapes accelerator on the simulated device, both tasks"
	@echo "make test       set up (virtualenv, pinned packages, Debian packages) and run the tests"
	@echo "make test-slow  the slow sweeps (full-size presets, more seeds)"
	@echo "make fuzz       the input fuzz suite with many fresh examples (make test runs a fixed small set)"
	@echo "make sim        the RTL unit testbenches on Verilator too (Icarus runs in make test)"
	@echo "make sim-report yosys resource table of the RTL units (tiny preset, w16a32 and w16a16)"
	@echo "make sim-kernel the kernel RTL harness: PROJECT=dir runs what Vitis HLS exported there, default the stand-in top"
	@echo "make bench      benchmarks: golden fixed-point vs C simulation vs float img/s, generate + compile time, the csim of BENCH_BASELINE beside"
	@echo "make report     HTML report: latency, roofline, resources, routing, accuracy"
	@echo "make explore    design-space exploration for ZCU102 -> build/explore/zcu102.yaml"
	@echo "make setup      only set up"

setup: $(STAMP) deb

# Debian packages for RTL simulation and synthesis reports; installed only if missing.
deb:
	@missing=""; for p in $(DEB_PACKAGES); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (edgemoe needs Python 3.11: set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) -c "import edgemoe, torch, torchvision, timm, apytypes, pynq" 
	touch $(STAMP)

DEMO_ARGS ?=
demo: setup
	$(PY) -m edgemoe.cli.demo $(DEMO_ARGS)

test: setup
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --durations=10

test-slow: setup
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m slow

fuzz: setup
	HYPOTHESIS_PROFILE=deep $(PY) -m pytest -q -n $(PYTEST_WORKERS) tests/test_fuzz.py

sim: setup
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m slow $(wildcard tests/test_sim_*.py)

sim-report: setup
	$(VENV)/bin/edgemoe sim resources --config m3vit-tiny-cityscapes --profiles w16a32,w16a16 --out build/sim/resources.md

# PROJECT=<generated project> runs the RTL `make hls` exported there (whole network, tokens compared bit for bit)
PROJECT ?=
sim-kernel: setup
	$(VENV)/bin/edgemoe sim kernel $(if $(PROJECT),--project $(PROJECT),--standin --config m3vit-micro --images 2 --task semseg --task depth --backpressure)

# the kernel before its weight path, epilogue and attention were rewritten for speed
BENCH_BASELINE ?= 3353512
bench: setup
	$(PY) benchmarks/speed.py --config m3vit-tiny-cityscapes --images 2 --baseline $(BENCH_BASELINE)

report: setup
	$(VENV)/bin/edgemoe report --config m3vit-tiny-cityscapes --out build/report/m3vit-tiny-cityscapes.html

explore: setup
	$(VENV)/bin/edgemoe explore --config m3vit-tiny-cityscapes --board zcu102 --batch 1 8 --out build/explore/zcu102.yaml

clean:
	rm -rf build out .pytest_cache
	rm -f bitstreams/*.simbit bitstreams/*.csim.so bitstreams/*.regmap.json
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
