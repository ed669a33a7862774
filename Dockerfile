# syntax=docker/dockerfile:1
# One serving image for all three tiers; the command picks the tier:
#   splitexit serve device | edge | cloud
# Serving needs onnxruntime, never torch: only requirements/serve.txt is installed,
# and training/, tests/, bench/ and *.pt weights are kept out of the build context
# (.dockerignore). Health checks are per service in docker-compose.yml, since each
# tier listens on its own port.

# Both stages must use the same base: the venv's python links to /usr/local/bin/python3.11.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: a venv with the pinned serving dependencies and the project ----
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Dependencies first, so code changes do not reinstall them.
COPY requirements/serve.txt requirements/serve.txt
RUN pip install --no-cache-dir -r requirements/serve.txt

# The project itself (no deps: they are pinned above). pyproject's package
# discovery also names training*, which is absent here and simply not found.
COPY pyproject.toml README.md ./
COPY shared/ shared/
COPY device/ device/
COPY edge/ edge/
COPY cloud/ cloud/
COPY splitexit/ splitexit/
RUN pip install --no-cache-dir --no-deps . \
    && ! python -c "import torch" 2>/dev/null

# ---- runtime: the venv, the model packages and a non-root user ----
FROM ${PYTHON_IMAGE} AS runtime

RUN groupadd --gid 10001 splitexit \
    && useradd --uid 10001 --gid splitexit --create-home --shell /usr/sbin/nologin splitexit

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY models/ /app/models/
# The gRPC contract, for clients without reflection (grpcurl -proto).
COPY protos/ /app/protos/

# The package is installed into site-packages, so its default models_dir (next to
# the sources) does not exist in the image: point every tier at /app/models.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SPLITEXIT_DEVICE_MODELS_DIR=/app/models \
    SPLITEXIT_EDGE_MODELS_DIR=/app/models \
    SPLITEXIT_CLOUD_MODELS_DIR=/app/models

USER 10001:10001

# device gRPC, edge gRPC, cloud gRPC, device HTTP
EXPOSE 50051 50052 50053 8080

CMD ["splitexit", "--help"]
