# edgelite — the two commands of the README: `make demo` and `make test`.
# Both create/refresh .venv from a fresh clone (stamp depends on pyproject.toml).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast venv device-test device-test-emulated bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[vision,convert,serve,dev,batch,ray]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python demos/recognize_astronauts.py

test: $(STAMP)
	$(BIN)/python -m pytest -q tests device_tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

device-test: $(STAMP)
	$(BIN)/python -m pytest -q -m device device_tests

device-test-emulated:
	bash device_tests/emulated/run.sh

clean:
	rm -rf $(VENV) build *.egg-info
