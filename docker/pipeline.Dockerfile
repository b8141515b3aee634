# syntax=docker/dockerfile:1.7
# The pipeline image: Airflow (api-server, scheduler, dag-processor, triggerer; tasks run in the scheduler
# with the LocalExecutor), unisem, Spark (pyspark's bundled distribution, also used for the Spark master and
# workers so driver and executors run the same Python and the same unisem) and the MLflow server.
# Build from the repository root:  docker build -f docker/pipeline.Dockerfile -t unisem-pipeline .
FROM python:3.11-slim-bookworm

# CPU wheels: nothing in this image trains on a GPU (that is the Ray image, docker/train.Dockerfile).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG UNISEM_UID=50000

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    JAVA_HOME=/usr/lib/jvm/default-java \
    AIRFLOW_HOME=/opt/airflow \
    UNISEM_HOME=/data/unisem \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

# Java 17 (Debian bookworm's default JRE) for Spark; tini reaps the JVMs and Ray/Spark children.
RUN apt-get update \
 && apt-get install -y --no-install-recommends default-jre-headless procps tini curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/unisem
# requirements.txt carries the cluster extras too (ray[default] for the Jobs API, psycopg2 + asyncpg for
# Airflow and MLflow on PostgreSQL), so this image and the Ray image install the same set.
COPY requirements.txt pyproject.toml README.md ./
RUN TORCH_VERSION="$(sed -n 's/^torch==//p' requirements.txt)" \
 && pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
 && pip install -r requirements.txt

# Editable install: configs/, dags/ and jobs/ are found relative to the package (unisem.config, unisem.pipeline).
COPY unisem ./unisem
COPY configs ./configs
COPY dags ./dags
COPY jobs ./jobs
RUN pip install --no-deps -e . \
 && useradd --uid "${UNISEM_UID}" --create-home unisem \
 && mkdir -p "${AIRFLOW_HOME}" "${UNISEM_HOME}" /mlartifacts \
 && chown -R unisem "${AIRFLOW_HOME}" "${UNISEM_HOME}" /mlartifacts

USER unisem
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["unisem", "--help"]
