"""Airflow DAG: refresh a catalog's retrieval run on Flink every night.

The task runs `stir run` (the worker image's stir-run wrapper) through the Beam provider's
BeamRunGoPipelineOperator against a Flink job server, with the stir worker pool as a sidecar
of every TaskManager (EXTERNAL environment). The Airflow worker needs the stir worker build
and ONNX Runtime (the job checks its models before submitting), e.g. by running in the stir
worker image. A run is complete when gs://BUCKET/runs/LATEST points at it.
"""

import pendulum
from airflow import DAG
from airflow.providers.apache.beam.operators.beam import BeamRunGoPipelineOperator

with DAG(
    dag_id="stir_refresh_flink",
    schedule="0 3 * * *",
    start_date=pendulum.datetime(2026, 12, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
) as dag:
    BeamRunGoPipelineOperator(
        task_id="stir_run",
        launcher_binary="/opt/stir/bin/stir-run",
        worker_binary="/opt/stir/bin/stir",
        runner="PortableRunner",
        pipeline_options={
            "endpoint": "flink-jobserver:8099",
            "environment_type": "EXTERNAL",
            "environment_config": "localhost:50000",
            "catalog": "gs://BUCKET/catalog/catalog.csv",
            "output": "gs://BUCKET/runs/{date}",
            "previous": "latest",
            "model": "gs://BUCKET/models/stir-tiny/embedder.json",
            "pair_model": "gs://BUCKET/models/stir-tiny/pairwise.json",
            "progress": "false",
        },
    )
