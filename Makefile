# edgelite — the two commands of the README: `make demo` and `make test`.
# Both create/refresh .venv from a fresh clone (stamp depends on pyproject.toml).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-torch venv device-test device-test-emulated bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[vision,convert,serve,dev,batch,ray,crypto]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python demos/recognize_astronauts.py

test: $(STAMP)
	$(BIN)/python -m pytest -q tests device_tests

# The live PyTorch path (torch.nn.Module / .pt2 -> ONNX -> int8). torch stays out of `make test`:
# "+cpu" matches only a CPU build (a local wheel or PyTorch's CPU wheel index) - never a CUDA one.
test-torch: $(STAMP)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "torch==2.13.0+cpu" \
		|| { echo "make test-torch: install a CPU build of torch 2.13 into .venv (torch==2.13.0+cpu)"; exit 1; }
	$(BIN)/python tests/data/torch/make_torch_fixtures.py --check
	$(BIN)/python -m pytest -q -m torch tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

device-test: $(STAMP)
	$(BIN)/python -m pytest -q -m device device_tests

device-test-emulated:
	bash device_tests/emulated/run.sh

clean:
	rm -rf $(VENV) build *.egg-info
