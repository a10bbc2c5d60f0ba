# Two commands from a clean clone: `make demo` and `make test`. Each creates .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml js/package.json $(wildcard js/src/*.js js/src/lib/*.js) \
          js/lab/package.json $(wildcard js/lab/src/*.ts js/lab/style/*.css)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m nbml.demo

test: $(STAMP)
	$(PY) -m pytest
	cd js && npm test

bench: $(STAMP)
	$(PY) benchmarks/import_time.py
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/set_label.py

clean:
	rm -rf $(VENV) .cache .pytest_cache
