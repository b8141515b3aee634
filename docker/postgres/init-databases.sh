#!/bin/bash
# Runs once, when the PostgreSQL volume is first initialised: one database for Airflow's metadata and one
# for MLflow's backend store, both owned by POSTGRES_USER.
set -euo pipefail
for db in "${AIRFLOW_DB:-airflow}" "${MLFLOW_DB:-mlflow}"; do
  exists="$(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '${db}'")"
  if [ "${exists}" != "1" ]; then
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -c "CREATE DATABASE \"${db}\""
  fi
done
