# splitexit — the two commands are `make demo` and `make test`; both set themselves up.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
export SPLITEXIT_CACHE_DIR ?= $(CURDIR)/.cache
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup data demo test train proto bench results clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements/serve.txt requirements/dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed  ## create .venv with the pinned dependencies

data: setup  ## fetch Fashion-MNIST (Debian package, no root needed) into .cache/
	@$(PY) -c "from shared import fashion_mnist; print('Fashion-MNIST:', fashion_mnist.locate())"

demo: data  ## start device, edge and cloud locally, send real test images, print a summary
	$(PY) -m splitexit demo

test: data  ## run the test suite
	$(PY) -m pytest

train: data  ## train the early-exit CNN and export models/fmnist-cnn (a few CPU minutes)
	$(PY) -m training.train

proto: setup  ## regenerate the gRPC stubs in shared/proto/ from protos/
	$(PY) -m grpc_tools.protoc -Ishared/proto=protos --python_out=. --grpc_python_out=. --pyi_out=. protos/splitexit.proto

clean:  ## remove the venv and caches (not the shipped model)
	rm -rf $(VENV) .cache .pytest_cache *.egg-info

bench: data  ## measure served vs bare onnxruntime latency; writes bench/results/serving.json
	$(PY) -m bench.serving

results: data  ## rerun demo + bench and regenerate the README's results tables
	$(PY) -m splitexit demo --json bench/results/demo.json
	$(PY) -m bench.serving
	$(PY) -m bench.readme
