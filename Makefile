# make demo: set up .venv and run the main jobs on built-in defaults (offline).
# make test: set up .venv (with the dev, web, video and backbones extras, and Debian's chromium for the browser test)
#            and run the test suite; make test-fast: all but the slow tier (tests/conftest.py's SLOW_FILES).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-fast venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e .
	touch $@

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,web,video,backbones]'
	touch $@

# tests/web/test_browser.py drives this browser through Playwright (which cannot download its own here).
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver

venv: $(STAMP)

SAMPLE_PHOTO = $$($(BIN)/python -c "import matplotlib.cbook as c; print(c.get_sample_data('grace_hopper.jpg', asfileobj=False))")

demo: $(STAMP)
	$(BIN)/reverie generate shakespeare --prompt "ROMEO:" --length 300 --temperature 0.7 --seed 0
	$(BIN)/reverie train python-stdlib --out runs/demo --minutes 2 --overwrite
	$(BIN)/reverie generate runs/demo --prompt "def " --length 300 --temperature 0.2 0.5 1.0 1.2 --seed 0
	$(BIN)/reverie dream "$(SAMPLE_PHOTO)" runs/demo/grace_hopper-dream.png --model efficientnet_lite0

test: $(DEV_STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest --durations=15

# the quick tier, for between edits: everything but the tests marked slow (tests/conftest.py)
test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) runs
