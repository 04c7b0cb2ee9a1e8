# make demo  - the gateway on embedded defaults: a simulated store through a real MQTT round trip
# make test  - system packages, a fresh venv, ruff, mypy --strict, the whole test suite (and its decision and
#              gateway tests again at a second instant and time zone: pytest-anyday)
# make bench - the performance benchmarks (bench/out/results.json)
# make model - rebuild models/offers.onnx + manifest from synthetic data with a fixed seed
# make soak  - the gateway at 200 events/s of mixed load for SOAK_SECONDS: RSS growth, drops, latency
# make install - (as root) the gateway, its systemd unit and the store broker's config (docs/operations.md)
# make pi-check - (as root) the gateway on a Pi's CPU: Debian 12 arm64 under QEMU Cortex-A72, A53 and A76, then the
#              check's own test (it must catch onnxruntime 1.21.0's Illegal instruction); docs/operations.md
# make config-doc - regenerate docs/config.md and the push allow-list in docs/remote-config.md from the schema

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_SECONDS ?= 10
SOAK_SECONDS ?= 600

.PHONY: demo test venv fresh-venv lint typecheck pytest pytest-anyday bench soak model install clean config-doc pi-check

# Three distributions live here (docs/architecture.md): the gateway (.), the contract it shares with the
# cloud (contract/) and the reference cloud (cloud/). Each pip command names every one it needs, so the
# contract, which is on no index, is always taken from this checkout.
DISTS = pyproject.toml contract/pyproject.toml cloud/pyproject.toml

# The runtime of the demo: the gateway with its demo extra (the embedded broker) and the reference cloud it
# pulls shoppers from; the dev extras add linters, tests and the D-Bus test stack, whose dbus-python builds
# from source against Debian's libdbus (installed by system-deps.sh test).
$(VENV)/.runtime: $(DISTS)
	./scripts/system-deps.sh demo
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ./contract -e '.[demo]' -e ./cloud
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	./scripts/system-deps.sh test
	$(PY) -m pip install -q -e ./contract -e '.[demo,dev]' -e './cloud[dev]'
	touch $@

venv: $(VENV)/.dev

fresh-venv:
	rm -rf $(VENV)
	$(MAKE) venv

demo: $(VENV)/.runtime
	$(VENV)/bin/edge-gateway demo --duration $(DEMO_SECONDS)

SOURCES = edge cloud/profilestore contract/storecontract tests bench scripts

lint: venv
	$(VENV)/bin/ruff check $(SOURCES)
	$(VENV)/bin/ruff format --check $(SOURCES)

typecheck: venv
	$(VENV)/bin/mypy --strict edge cloud/profilestore contract/storecontract

pytest: venv
	$(PY) -m pytest -q

# The main run is on a Monday morning (tests/support/clock.py); the decision and gateway tests run once more
# on a Sunday evening, in a process time zone where it is already Monday: no test may depend on the day, the
# hour or the zone it runs in (docs/testing.md). About a minute. The rebuild of the model (minutes, no clock
# in it), the BLE walks (their own manual clock) and the SIGKILL test (three minutes; it counts rows, whatever
# was decided) would only repeat themselves.
ANYDAY_INSTANT ?= 2027-03-07T21:30:00Z
ANYDAY_TZ ?= Pacific/Kiritimati
ANYDAY_TESTS ?= tests/decide tests/gateway tests/control/test_remote_config.py tests/test_demo.py tests/test_timeline.py \
	--deselect tests/decide/test_model_rebuild.py --deselect tests/gateway/test_ble_walk.py \
	--deselect tests/gateway/test_crash_safety.py --deselect tests/gateway/test_crash_privacy.py

pytest-anyday: venv
	EDGE_TEST_INSTANT=$(ANYDAY_INSTANT) TZ=$(ANYDAY_TZ) $(PY) -m pytest -q $(ANYDAY_TESTS)

# The Pi check comes last: it needs the venv only for its x86 side, and it is the slowest step (docs/testing.md).
test: fresh-venv
	$(MAKE) lint typecheck pytest pytest-anyday pi-check

bench: venv
	$(PY) -m bench

soak: venv
	$(PY) -m bench.soak --seconds $(SOAK_SECONDS)

install:
	./scripts/install.sh

# The arm64 root is cached in .pi-root/ (git-ignored; rebuilt when missing, ~3 minutes); the probe's x86 side
# runs in $(VENV). scripts/pi_check.py --help: one CPU, or another onnxruntime (the check's own test, -m pi,
# which needs pytest: the dev extra).
pi-check: venv
	$(PY) scripts/pi_check.py
	$(PY) -m pytest -q -m pi tests/ops/test_pi_check.py

config-doc: $(VENV)/.runtime
	$(PY) -m edge.config.reference

model: venv
	$(PY) scripts/build_model.py --out models/

clean:
	rm -rf $(VENV) bench/out .mypy_cache .ruff_cache .pytest_cache
