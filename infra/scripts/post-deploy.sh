#!/bin/sh
# azd postdeploy hook (azure.yaml). Runs after the code is deployed, every `azd up`/`azd deploy`;
# every step is idempotent.
#  1. Pool identity: the Batch data plane cannot give a pool a managed identity, so the pool is
#     created (or patched) through ARM from the app's own pool spec (infra/batch_pool.py).
#     Done before step 2, so the first upload already finds the pool with its identity.
#  2. Event Grid: subscribe the blob trigger's webhook to BlobCreated events of the input
#     container only. The webhook URL needs the host's blobs_extension system key, which exists
#     once the host has indexed the Event Grid-sourced blob trigger, hence after deployment.
# Needs: az (logged in to the same cloud/subscription as azd), azd, and Python with the app's
# requirements (.venv from ./dev, or python3 with requirements.txt) for step 1.
# Never prints the webhook key.
set -eu

cd "$(dirname "$0")/../.."

fail() { echo "post-deploy: $*" >&2; exit 1; }
for tool in az azd; do
  command -v "$tool" >/dev/null 2>&1 || fail "'$tool' is required (see docs/deploy.md)"
done

# azd exports the environment's values to hooks; read any that are missing from azd itself.
azd_values=""
value_of() {
  if [ -z "$azd_values" ]; then azd_values=$(azd env get-values); fi
  printf '%s\n' "$azd_values" | sed -n "s/^$1=\"\{0,1\}\([^\"]*\)\"\{0,1\}\$/\1/p" | head -n 1
}
for name in AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME AZURE_FUNCTION_APP_HOSTNAME \
            AZURE_BATCH_ACCOUNT_NAME BATCH_POOL_ID POOL_IDENTITY_RESOURCE_ID \
            EVENTGRID_SYSTEM_TOPIC_NAME INPUT_CONTAINER BLOB_TRIGGER_FUNCTION_NAME; do
  eval "current=\${$name:-}"
  if [ -z "$current" ]; then
    current=$(value_of "$name")
    eval "$name=\$current"
    export "$name"
  fi
done
for name in AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME AZURE_FUNCTION_APP_HOSTNAME \
            EVENTGRID_SYSTEM_TOPIC_NAME INPUT_CONTAINER BLOB_TRIGGER_FUNCTION_NAME; do
  eval "current=\${$name:-}"
  [ -n "$current" ] || fail "$name is not set (run 'azd provision' first)"
done

retries=${POST_DEPLOY_RETRIES:-30}
pause=${POST_DEPLOY_RETRY_SECONDS:-10}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ---- 1. the pool and its identity
if [ -n "$POOL_IDENTITY_RESOURCE_ID" ]; then
  python=.venv/bin/python
  [ -x "$python" ] || python=python3
  subscription=$(az account show --query id -o tsv)
  # A path without a host: az rest prefixes the current cloud's ARM endpoint.
  pool_url="/subscriptions/$subscription/resourceGroups/$AZURE_RESOURCE_GROUP/providers/Microsoft.Batch/batchAccounts/$AZURE_BATCH_ACCOUNT_NAME/pools/$BATCH_POOL_ID?api-version=2024-07-01"
  if az rest --method get --url "$pool_url" -o json >"$work/pool.json" 2>"$work/get.err"; then
    if grep -qiF "$POOL_IDENTITY_RESOURCE_ID" "$work/pool.json"; then
      echo "post-deploy: pool $BATCH_POOL_ID already has the pool identity"
    else
      "$python" -m infra.batch_pool identity --identity "$POOL_IDENTITY_RESOURCE_ID" >"$work/patch.json"
      az rest --method patch --url "$pool_url" --body "@$work/patch.json" -o none
      echo "post-deploy: pool $BATCH_POOL_ID existed; identity added (nodes allocated from now on get it)"
    fi
  elif grep -qiE "not ?found" "$work/get.err"; then
    az functionapp config appsettings list -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" -o json \
      >"$work/settings.json"
    "$python" -m infra.batch_pool body <"$work/settings.json" >"$work/pool-body.json"
    az rest --method put --url "$pool_url" --body "@$work/pool-body.json" -o none
    echo "post-deploy: pool $BATCH_POOL_ID created with the pool identity"
  else
    cat "$work/get.err" >&2
    fail "could not read pool $BATCH_POOL_ID"
  fi
fi

# ---- 2. Event Grid subscription -> blob trigger webhook
key=""
attempt=0
while [ "$attempt" -lt "$retries" ]; do
  key=$(az functionapp keys list -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" \
          --query "systemKeys.blobs_extension" -o tsv 2>/dev/null || true)
  [ -n "$key" ] && break
  attempt=$((attempt + 1))
  echo "post-deploy: waiting for the host's blobs_extension key ($attempt/$retries)"
  sleep "$pause"
done
[ -n "$key" ] || fail "the function host never published its blobs_extension key; is $BLOB_TRIGGER_FUNCTION_NAME deployed with BLOB_TRIGGER_SOURCE=EventGrid?"

endpoint="https://$AZURE_FUNCTION_APP_HOSTNAME/runtime/webhooks/blobs?functionName=Host.Functions.$BLOB_TRIGGER_FUNCTION_NAME&code=$key"
# The subscription goes through ARM with its body in a file (in the private work dir): the key is part of the
# endpoint URL and must not appear on a command line, where any local user's `ps` would show it.
subscription=${subscription:-$(az account show --query id -o tsv)}
subscription_url="/subscriptions/$subscription/resourceGroups/$AZURE_RESOURCE_GROUP/providers/Microsoft.EventGrid/systemTopics/$EVENTGRID_SYSTEM_TOPIC_NAME/eventSubscriptions/$INPUT_CONTAINER-blob-created?api-version=2022-06-15"
# Trailing slash: the container "input" must not also match "input2".
cat >"$work/subscription.json" <<JSON
{"properties": {
  "destination": {"endpointType": "WebHook", "properties": {"endpointUrl": "$endpoint"}},
  "filter": {"includedEventTypes": ["Microsoft.Storage.BlobCreated"],
             "subjectBeginsWith": "/blobServices/default/containers/$INPUT_CONTAINER/"},
  "eventDeliverySchema": "EventGridSchema",
  "retryPolicy": {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440}
}}
JSON
az rest --method put --url "$subscription_url" --body "@$work/subscription.json" -o none
echo "post-deploy: Event Grid delivers BlobCreated in '$INPUT_CONTAINER' to $BLOB_TRIGGER_FUNCTION_NAME"
