"""The one place a Spark session is built, so every job and test runs Spark the same way.

Defaults suit the shared development machine (2 cores, 24 GB shared by several people): a modest driver heap,
few shuffle partitions (the default 200 mostly schedules empty tasks locally), no UI, quiet logs and UTC so
timestamps read the same everywhere. On a cluster the master comes from the caller, ``SPARK_MASTER`` or
``spark-submit --master``; the same code runs unchanged.
"""
from __future__ import annotations

import os
import sys

# Environment overrides for the settings that only matter at scale; the defaults fit a laptop-class machine.
DRIVER_MEMORY_ENV = "UNISEM_SPARK_DRIVER_MEMORY"
SHUFFLE_PARTITIONS_ENV = "UNISEM_SPARK_SHUFFLE_PARTITIONS"
DEFAULT_DRIVER_MEMORY = "3g"
DEFAULT_SHUFFLE_PARTITIONS = 8


def resolve_master(master: str | None = None, configured: str = "local[*]") -> str | None:
    """The master to use: the argument, else ``SPARK_MASTER``, else the configured one.

    Returns None under ``spark-submit`` when nothing was passed explicitly, so its ``--master`` stands.
    """
    if master:
        return master
    if os.environ.get("SPARK_MASTER"):
        return os.environ["SPARK_MASTER"]
    if os.environ.get("PYSPARK_GATEWAY_PORT"):  # launched by spark-submit: the JVM already knows its master
        return None
    return configured or "local[*]"


def spark_session(master: str | None = None, app: str = "unisem"):
    """Get (or create) the process's Spark session with unisem's settings.

    Spark allows one session per process; a second call returns the first one (its master is kept).
    """
    import logging

    from pyspark.sql import SparkSession

    # py4j logs every connection it closes at INFO, also from ``__del__`` while the interpreter shuts down,
    # when a handler installed earlier (Airflow's, on the root logger at INFO) may hold a closed stream:
    # a "--- Logging error ---" traceback after a finished run. Its warnings and errors still show.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    builder = SparkSession.builder
    if not os.environ.get("PYSPARK_GATEWAY_PORT"):  # under spark-submit its --name (the job's name) stands
        builder = builder.appName(app)
    resolved = resolve_master(master)
    if resolved is None or resolved.startswith("local"):
        # Local Python workers must be this interpreter (the venv with pyarrow), not whatever "python3" is
        # first on PATH; on a cluster the workers' Python is the cluster's business (PYSPARK_PYTHON there).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if resolved:
        builder = builder.master(resolved)
    builder = (
        builder.config("spark.driver.memory", os.environ.get(DRIVER_MEMORY_ENV, DEFAULT_DRIVER_MEMORY))
        .config(
            "spark.sql.shuffle.partitions",
            os.environ.get(SHUFFLE_PARTITIONS_ENV, str(DEFAULT_SHUFFLE_PARTITIONS)),
        )
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.adaptive.enabled", "true")
        # Arrays of structs are sorted and sliced per user; keep the JVM from warning about wide plans.
        .config("spark.sql.debug.maxToStringFields", "200")
        .config("spark.driver.extraJavaOptions", "-Dlog4j2.level=ERROR")
    )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def spark_errors() -> tuple[type[BaseException], ...]:
    """Spark's exception types (Python-side and JVM-side), imported only when an error is being handled."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    return (PySparkException, Py4JJavaError)


def spark_error_summary(exc: BaseException) -> str:
    """The first meaningful line of a Spark/JVM error; the rest is a JVM stack trace nobody should have to read."""
    java = getattr(exc, "java_exception", None)
    text = str(java.toString()) if java is not None else str(exc)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
