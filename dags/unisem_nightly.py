"""unisem nightly: quality gate -> features -> text embeddings -> Ray Train -> evaluation -> MLflow registry
-> top-K for every user with the champion (published as the Airflow Asset ``unisem_recommendations``).

Thin wiring over ``unisem.pipeline.stages``: every task rebuilds the run's spec from the DAG params and the
logical date, calls one stage and passes on its typed record of paths (``unisem.pipeline.outputs``). A
``fail`` verdict short-circuits the run at ``proceed`` (everything up to ``promote`` shows as skipped, the champion is untouched) and ``report``
still runs and says why. ``watcher`` fails the DAG run when any task failed, since the run state otherwise
follows the leaf ``report`` task, which succeeds on purpose.

Only the standard library, Airflow's SDK, unisem's config module and the DAG params are imported here;
the heavy stage libraries are imported inside the tasks. Schedule and retries come from the config file named by
``$UNISEM_CONFIG`` (default: the built-in defaults = configs/default.yaml).
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import TriggerRule, dag, task

from unisem.config import load_config
from unisem.pipeline.assets import recommendations_asset
from unisem.pipeline.params import run_params

CONFIG_FILE = os.environ.get("UNISEM_CONFIG", "")
_ORCH = load_config(CONFIG_FILE or None).orchestration

DEFAULT_ARGS = {
    "owner": "unisem",
    "retries": _ORCH.retries,
    "retry_delay": timedelta(minutes=_ORCH.retry_delay_minutes),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(hours=2),
    # The last bound on a task (the stages bound each service wait below it): with one active run, a hang
    # would otherwise block every later night.
    "execution_timeout": timedelta(seconds=_ORCH.timeouts.task_execution_s),
}

PARAMS = run_params()
RECOMMENDATIONS = recommendations_asset()


def _spec(context) -> dict:
    from unisem.pipeline.spec import spec_from_context

    return spec_from_context(context).to_dict()


@dag(
    dag_id="unisem_nightly",
    schedule=_ORCH.schedule or None,
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=PARAMS,
    tags=["unisem"],
    doc_md=__doc__,
)
def unisem_nightly():
    @task
    def validate(**context) -> dict:
        from unisem.pipeline import stages

        return stages.validate(_spec(context))

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def proceed(validated: dict, **context) -> bool:
        from unisem.pipeline import stages

        return bool(stages.proceed(_spec(context), validated)["proceed"])

    @task
    def features(validated: dict, **context) -> dict:
        from unisem.pipeline import stages

        return stages.features(_spec(context), validated)

    @task
    def embed(featured: dict, **context) -> dict:
        from unisem.pipeline import stages

        return stages.embed(_spec(context), featured)

    @task
    def train(featured: dict, embedded: dict, **context) -> dict:
        from unisem.pipeline import stages

        return stages.train(_spec(context), featured, embedded)

    @task
    def evaluate(featured: dict, trained: dict, **context) -> dict:
        from unisem.pipeline import stages

        return stages.evaluate(_spec(context), featured, trained)

    @task
    def register(trained: dict, evaluated: dict, **context) -> dict:
        from unisem.pipeline import stages

        return stages.register(_spec(context), trained, evaluated)

    @task
    def promote(featured: dict, embedded: dict, registered: dict, **context) -> dict:
        from unisem.pipeline import stages

        return stages.promote(_spec(context), featured, embedded, registered)

    @task(outlets=[RECOMMENDATIONS])
    def recommend(featured: dict, promoted: dict, **context) -> dict:
        from unisem.pipeline import stages

        return stages.recommend(_spec(context), featured, promoted)

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def report(**context) -> dict:
        from unisem.pipeline import stages

        return stages.report(_spec(context))

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
    def watcher() -> None:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("a unisem pipeline task failed; see the run report for the stage and error")

    validated = validate()
    go_on = proceed(validated)
    featured = features(validated)
    go_on >> featured
    embedded = embed(featured)
    trained = train(featured, embedded)
    evaluated = evaluate(featured, trained)
    registered = register(trained, evaluated)
    promoted = promote(featured, embedded, registered)
    recommended = recommend(featured, promoted)
    summary = report()
    recommended >> summary
    # Not proceed: a short-circuit skips its direct downstream tasks, and the watcher must stay armed.
    [validated, featured, embedded, trained, evaluated, registered, promoted, recommended, summary] >> watcher()


unisem_nightly()
