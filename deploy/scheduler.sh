#!/usr/bin/env bash
# A Cloud Scheduler job that launches the Flex Template every Monday at 03:00 UTC through the
# projects.locations.flexTemplates:launch API: a refresh of the shards dropped under $BUCKET/incoming/ against the
# index at $BUCKET/index (the pointer commit makes a double firing harmless: one run commits, the other fails).
#   PROJECT=... REGION=... BUCKET=gs://... SA=synthcap-scheduler@PROJECT.iam.gserviceaccount.com deploy/scheduler.sh
set -euo pipefail
: "${PROJECT:?}" "${REGION:?}" "${BUCKET:?}" "${SA:?}"
IMAGE="${IMAGE:-$REGION-docker.pkg.dev/$PROJECT/synthcap/synthcap:0.1.0}"
BODY=$(cat <<JSON
{"launchParameter": {
  "jobName": "synthcap-weekly",
  "containerSpecGcsPath": "$BUCKET/templates/synthcap.json",
  "parameters": {"verb": "refresh", "input": "$BUCKET/incoming/*.warc.gz", "index": "$BUCKET/index",
                 "output": "$BUCKET/refreshed/weekly", "overwrite": "true", "sdk_container_image": "$IMAGE"},
  "environment": {"tempLocation": "$BUCKET/tmp", "serviceAccountEmail": "$SA"}}}
JSON
)
gcloud scheduler jobs create http synthcap-weekly --project "$PROJECT" --location "$REGION" \
  --schedule "0 3 * * 1" --time-zone UTC --http-method POST \
  --uri "https://dataflow.googleapis.com/v1b3/projects/$PROJECT/locations/$REGION/flexTemplates:launch" \
  --oauth-service-account-email "$SA" --oauth-token-scope https://www.googleapis.com/auth/cloud-platform \
  --headers Content-Type=application/json --message-body "$BODY"
