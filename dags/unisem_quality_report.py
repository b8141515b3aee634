"""unisem quality report: only the data validation and its published report, for data teams.

Runs the same ``validate`` stage as the nightly DAG (Great Expectations on Spark, gate verdict, HTML report)
into its own run folder (``quality-<date>``), then publishes the report under
``$UNISEM_HOME/published/quality/{<run id>,latest}/`` and writes a run summary. No training, no registry.
Triggered by hand (no schedule); a ``fail`` verdict is a finding here, not a task failure.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import TriggerRule, dag, task

from unisem.config import load_config
from unisem.pipeline.params import run_params

_TIMEOUTS = load_config(os.environ.get("UNISEM_CONFIG") or None).orchestration.timeouts
RUN_PREFIX = "quality-"

PARAMS = run_params("config_file", "catalog", "interactions", "spark_master", "overrides")


def _spec(context) -> dict:
    from unisem.pipeline.spec import spec_from_context

    return spec_from_context(context, prefix=RUN_PREFIX).to_dict()


@dag(
    dag_id="unisem_quality_report",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "unisem", "retries": 1, "retry_delay": timedelta(minutes=2),
                  "execution_timeout": timedelta(seconds=_TIMEOUTS.task_execution_s)},
    params=PARAMS,
    tags=["unisem", "quality"],
    doc_md=__doc__,
)
def unisem_quality_report():
    @task
    def validate(**context) -> dict:
        from unisem.pipeline import stages

        return stages.validate(_spec(context))

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def publish(**context) -> dict:
        from unisem.pipeline import stages

        return stages.report(_spec(context), expected=("validate",))

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
    def watcher() -> None:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("the validation task failed; see the run report")

    validated = validate()
    published = publish()
    validated >> published
    [validated, published] >> watcher()


unisem_quality_report()
