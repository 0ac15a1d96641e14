"""Airflow (Cloud Composer) DAG: a weekly refresh of the shards that arrived, against the incremental index.

Set the Airflow variables synthcap_project, synthcap_region, synthcap_bucket and synthcap_image.
"""
from datetime import datetime

from airflow import DAG
from airflow.models import Variable
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator

PROJECT = Variable.get("synthcap_project")
REGION = Variable.get("synthcap_region")
BUCKET = Variable.get("synthcap_bucket")
IMAGE = Variable.get("synthcap_image")

with DAG("synthcap_weekly_refresh", schedule="0 3 * * 1", start_date=datetime(2026, 1, 5), catchup=False,
         max_active_runs=1, tags=["synthcap"]) as dag:
    DataflowStartFlexTemplateOperator(
        task_id="refresh",
        project_id=PROJECT,
        location=REGION,
        wait_until_finished=True,
        body={"launchParameter": {
            "jobName": "synthcap-{{ ds_nodash }}",
            "containerSpecGcsPath": f"{BUCKET}/templates/synthcap.json",
            "parameters": {"verb": "refresh", "input": f"{BUCKET}/incoming/{{{{ ds_nodash }}}}/*.warc.gz",
                           "index": f"{BUCKET}/index", "output": f"{BUCKET}/refreshed/{{{{ ds_nodash }}}}",
                           "sdk_container_image": IMAGE},
            "environment": {"tempLocation": f"{BUCKET}/tmp"},
        }},
    )
