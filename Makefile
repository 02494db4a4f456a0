# The two commands: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/uptend demo

test: $(STAMP)
	bash scripts/test

check: $(STAMP)
	bash scripts/check

bench: $(STAMP)
	$(VENV)/bin/python bench/e2e.py

clean:
	rm -rf $(VENV) .coverage* .mypy_cache .ruff_cache .pytest_cache
