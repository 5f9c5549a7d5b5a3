# Two entry points for a fresh machine (Python 3.10+ and pip only):
#   make demo   -> local virtual environment, install, run the quickstart on the embedded data
#   make test   -> local virtual environment, install with test extras, run the whole suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
TORCH_PIN = torch==2.13.0

.PHONY: demo test install mutation mutation-sample mutation-hand clean

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

# One pytest-xdist worker per core (at most 8): the suite's small networks are bound by Python,
# not arithmetic, so two processes on two cores finish sooner than one using both. The Ray tests
# share one worker (their xdist_group), so two Ray instances never start at once.
test: install
	$(PY) -m pytest -q -n auto --maxprocesses 8 --dist loadgroup

# Mutation testing of the core modules (pyproject.toml [tool.mutmut]); long: not part of `make test`.
# MUTANTS narrows it to mutant-name patterns, e.g. the core behaviours:
#   make mutation MUTANTS="$$(cat scripts/mutation_core.txt)"
mutation: install
	$(PY) -m pip install -q "mutmut>=3.3"
	rm -rf mutants
	# one thread per test process: two mutants run at once on two cores, and a mutant's time limit
	# counts CPU seconds, which idle-spinning OpenMP threads would use up
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children 2 $(MUTANTS) || true
	$(VENV)/bin/mutmut export-cicd-stats 2>/dev/null || true
	$(PY) scripts/mutation_scores.py

# A seeded uniform sample of mutants where running all would take hours (scripts/mutation_sample.py):
#   make mutation-sample SAMPLE="--module training.py=50 --module evaluation.py=60"
# The first mutmut run matches no mutant: it generates them and maps tests to functions.
mutation-sample: install
	$(PY) -m pip install -q "mutmut>=3.3"
	rm -rf mutants
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/mutmut run 'no.mutant.matches.this*' >/dev/null || true
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children 2 \
	  $$($(PY) scripts/mutation_sample.py $(SAMPLE)) || true
	$(PY) scripts/mutation_scores.py

# Hand-written mutants of promised behaviours (scripts/hand_mutants.json), each against the fast tests;
# minutes, not hours: a killed mutant stops at its first failing test
mutation-hand: install
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) scripts/hand_mutants.py --out mutants-hand.json

clean:
	rm -rf $(VENV) demo-output .pytest_cache mutants mutants-hand.json
