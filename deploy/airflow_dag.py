"""Airflow (Cloud Composer) DAG: launch the synthcap Flex Template weekly on the shards that arrived.

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

with DAG("synthcap_weekly_curate", schedule="0 3 * * 1", start_date=datetime(2026, 1, 5), catchup=False,
         max_active_runs=1, tags=["synthcap"]) as dag:
    DataflowStartFlexTemplateOperator(
        task_id="curate",
        project_id=PROJECT,
        location=REGION,
        wait_until_finished=True,
        body={"launchParameter": {
            "jobName": "synthcap-{{ ds_nodash }}",
            "containerSpecGcsPath": f"{BUCKET}/templates/synthcap.json",
            "parameters": {"verb": "curate", "input": f"{BUCKET}/incoming/{{{{ ds_nodash }}}}/*.warc.gz",
                           "output": f"{BUCKET}/curated/{{{{ ds_nodash }}}}", "sdk_container_image": IMAGE},
            "environment": {"tempLocation": f"{BUCKET}/tmp"},
        }},
    )
