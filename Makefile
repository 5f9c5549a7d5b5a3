# Two entry points for a fresh machine (Python 3.10+ and pip only):
#   make demo   -> local virtual environment, install, run the quickstart on the embedded data
#   make test   -> local virtual environment, install with test extras, run the whole suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
TORCH_PIN = torch==2.13.0

.PHONY: demo test install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The pinned CPU build first, so the package's looser "torch>=2.2" is already met
	# and pip does not pull the multi-GB CUDA wheels.
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/oneclass demo --out demo-output

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo-output .pytest_cache
