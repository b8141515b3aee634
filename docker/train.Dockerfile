# syntax=docker/dockerfile:1.7
# The Ray image: the Ray head and the GPU training workers (Ray Train, TorchTrainer with use_gpu).
# torch comes from the CUDA wheel index; the wheels carry the CUDA runtime libraries, so the host needs only
# the NVIDIA driver and the NVIDIA Container Toolkit (compose reserves the GPUs). Ray Jobs submitted by the
# nightly DAG run `unisem stage train ...` here, so the image holds the same unisem as the pipeline image.
# Build from the repository root:  docker build -f docker/train.Dockerfile -t unisem-train .
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG UNISEM_UID=50000

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UNISEM_HOME=/data/unisem \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

RUN apt-get update \
 && apt-get install -y --no-install-recommends procps tini curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/unisem
COPY requirements.txt pyproject.toml README.md ./
RUN TORCH_VERSION="$(sed -n 's/^torch==//p' requirements.txt)" \
 && pip install --index-url "${TORCH_INDEX_URL}" --extra-index-url https://pypi.org/simple "torch==${TORCH_VERSION}" \
 && pip install -r requirements.txt

COPY unisem ./unisem
COPY configs ./configs
COPY dags ./dags
COPY jobs ./jobs
RUN pip install --no-deps -e . \
 && useradd --uid "${UNISEM_UID}" --create-home unisem \
 && mkdir -p "${UNISEM_HOME}" /tmp/ray \
 && chown -R unisem "${UNISEM_HOME}" /tmp/ray

USER unisem
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["ray", "start", "--help"]
