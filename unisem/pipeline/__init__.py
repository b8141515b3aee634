"""The nightly pipeline as plain functions (one per Airflow task) plus the tools that run it through Airflow.

The DAG files in ``dags/`` only wire these stages together; everything with logic is here so it can be run
and tested without a scheduler.
"""
