#!/usr/bin/env bash
# Build the image, register the Flex Template, and run one curate job on Dataflow.
#   PROJECT=my-proj REGION=europe-west4 BUCKET=gs://my-bucket deploy/launch.sh gs://my-bucket/crawl/CC-MAIN-2024-10/*.warc.gz
set -euo pipefail
: "${PROJECT:?}" "${REGION:?}" "${BUCKET:?}"
INPUT="${1:?usage: launch.sh INPUT_GLOB [OUTPUT]}"
OUTPUT="${2:-$BUCKET/curated/$(date -u +%Y%m%d-%H%M%S)}"
IMAGE="$REGION-docker.pkg.dev/$PROJECT/synthcap/synthcap:$(python3 -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')"
TEMPLATE="$BUCKET/templates/synthcap.json"

gcloud builds submit --project "$PROJECT" --region "$REGION" --tag "$IMAGE" --config /dev/stdin . <<YAML
steps:
- name: gcr.io/cloud-builders/docker
  args: [build, -f, deploy/Dockerfile, -t, "$IMAGE", .]
images: ["$IMAGE"]
YAML
gcloud dataflow flex-template build "$TEMPLATE" --image "$IMAGE" --sdk-language PYTHON \
  --metadata-file deploy/metadata.json --project "$PROJECT"
gcloud dataflow flex-template run "synthcap-curate-$(date -u +%Y%m%d-%H%M%S)" \
  --template-file-gcs-location "$TEMPLATE" --project "$PROJECT" --region "$REGION" \
  --temp-location "$BUCKET/tmp" --additional-experiments use_runner_v2 \
  --parameters sdk_container_image="$IMAGE",verb=curate,input="$INPUT",output="$OUTPUT"
