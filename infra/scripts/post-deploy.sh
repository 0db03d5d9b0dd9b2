#!/bin/sh
# azd postdeploy hook (azure.yaml), after the code is deployed on every `azd up`/`azd deploy`.
# Subscribes the blob trigger's webhook to BlobCreated events of the input container. The webhook URL
# carries the host's blobs_extension system key, which exists only once the host has started with the
# Event Grid-sourced blob trigger - hence here, not in the template. (The pool, with its identity, is
# declared in infra/modules/pool.bicep.)
#
# Needs az, azd and a POSIX shell; nothing else (no Python). Every az call is pinned to azd's subscription.
# Idempotent: when the subscription already delivers to this webhook with this key and filter, nothing is
# changed. Event Grid validates a webhook when the subscription is created (a handshake with the app):
# a cold app can miss it, so the create is retried with backoff, saying what it waits for.
# The key never appears on a command line or in the output: it goes from az's stdout into a private file.
set -eu

HOOK=post-deploy
cd "$(dirname "$0")/../.."
. infra/scripts/common.sh

need_tools
load AZURE_SUBSCRIPTION_ID AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME AZURE_FUNCTION_APP_HOSTNAME \
     EVENTGRID_SYSTEM_TOPIC_NAME INPUT_CONTAINER BLOB_TRIGGER_FUNCTION_NAME
require AZURE_SUBSCRIPTION_ID AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME AZURE_FUNCTION_APP_HOSTNAME \
        EVENTGRID_SYSTEM_TOPIC_NAME INPUT_CONTAINER BLOB_TRIGGER_FUNCTION_NAME

key_tries=${POST_DEPLOY_KEY_TRIES:-30}
key_pause=${POST_DEPLOY_KEY_SECONDS:-10}
create_tries=${POST_DEPLOY_CREATE_TRIES:-6}
backoff=${POST_DEPLOY_BACKOFF_SECONDS:-15}
backoff_cap=${POST_DEPLOY_BACKOFF_CAP_SECONDS:-120}
settle_tries=${POST_DEPLOY_SETTLE_TRIES:-36}
settle_pause=${POST_DEPLOY_SETTLE_SECONDS:-5}
api=2022-06-15

umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ---- 1. the host's blobs_extension key (the host publishes it once it has indexed the blob trigger)
key=""
attempt=1
while :; do
  key=$(azs functionapp keys list -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" \
          --query "systemKeys.blobs_extension" -o tsv 2>"$work/keys.err" || true)
  [ -n "$key" ] && break
  [ "$attempt" -ge "$key_tries" ] && break
  say "waiting for the function host to publish its blobs_extension key (it starts after the deployment and indexes the blob trigger): try $attempt/$key_tries, next in ${key_pause}s"
  attempt=$((attempt + 1))
  sleep "$key_pause"
done
if [ -z "$key" ]; then
  scrub <"$work/keys.err" >&2
  fail "the function host never published its blobs_extension key; is $BLOB_TRIGGER_FUNCTION_NAME deployed with BLOB_TRIGGER_SOURCE=EventGrid? (az functionapp log / Application Insights show why the host did not start)"
fi

base_url="https://$AZURE_FUNCTION_APP_HOSTNAME/runtime/webhooks/blobs"
printf '%s?functionName=Host.Functions.%s&code=%s\n' "$base_url" "$BLOB_TRIGGER_FUNCTION_NAME" "$key" >"$work/endpoint.txt"
subject="/blobServices/default/containers/$INPUT_CONTAINER/"  # trailing slash: "input" must not match "input2"
sub_path="$(rg_path)/providers/Microsoft.EventGrid/systemTopics/$EVENTGRID_SYSTEM_TOPIC_NAME/eventSubscriptions/$INPUT_CONTAINER-blob-created"

# ---- 2. already in place? (same webhook, same key, same filter, provisioned)
if az rest --method get --url "$sub_path?api-version=$api" \
     --query "join('|', [to_string(properties.provisioningState), to_string(properties.destination.properties.endpointBaseUrl), to_string(properties.filter.subjectBeginsWith)])" \
     -o tsv >"$work/current.txt" 2>"$work/get.err"; then
  if [ "$(cat "$work/current.txt")" = "Succeeded|$base_url|$subject" ] \
     && az rest --method post --url "$sub_path/getFullUrl?api-version=$api" --query endpointUrl -o tsv \
          >"$work/full.txt" 2>/dev/null \
     && cmp -s "$work/full.txt" "$work/endpoint.txt"; then
    say "Event Grid already delivers BlobCreated in '$INPUT_CONTAINER' to $BLOB_TRIGGER_FUNCTION_NAME; nothing to change"
    exit 0
  fi
elif ! grep -qiE "not ?found" "$work/get.err"; then
  scrub <"$work/get.err" >&2
  fail "could not read the Event Grid subscription $INPUT_CONTAINER-blob-created"
fi

# ---- 3. create or update it, retrying while Event Grid cannot validate the webhook yet
endpoint=$(cat "$work/endpoint.txt")
cat >"$work/subscription.json" <<JSON
{"properties": {
  "destination": {"endpointType": "WebHook", "properties": {"endpointUrl": "$endpoint"}},
  "filter": {"includedEventTypes": ["Microsoft.Storage.BlobCreated"], "subjectBeginsWith": "$subject"},
  "eventDeliverySchema": "EventGridSchema",
  "retryPolicy": {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440}
}}
JSON
# Event Grid creates the subscription asynchronously: the PUT may answer 201 "Creating" and the handshake
# fail afterwards (provisioningState Failed), or the PUT itself may fail with the handshake error.
# Either way: wait for the outcome, and retry what time can fix.
settle() {  # prints the final provisioningState (or the last one seen)
  _i=0
  while :; do
    _state=$(az rest --method get --url "$sub_path?api-version=$api" --query properties.provisioningState -o tsv \
               2>/dev/null || echo Unknown)
    case "$_state" in Creating|Updating) ;; *) echo "$_state"; return ;; esac
    _i=$((_i + 1))
    [ "$_i" -lt "$settle_tries" ] || { echo "$_state"; return; }
    sleep "$settle_pause"
  done
}
attempt=1
pause=$backoff
while :; do
  if az rest --method put --url "$sub_path?api-version=$api" --body "@$work/subscription.json" -o none \
       2>"$work/put.err"; then
    state=$(settle)
    [ "$state" = Succeeded ] && break
    echo "the subscription's provisioning ended $state: Event Grid's webhook validation handshake did not complete" \
      >"$work/put.err"
  fi
  # Retry what time can fix: the webhook handshake with a cold app, throttling, a conflicting operation,
  # a service hiccup. Anything else (rights, a bad request) fails now, with az's message.
  if ! grep -qiE "validation|handshake|timed? ?out|TooManyRequests|429|Conflict|ServiceUnavailable|InternalServerError|503|502|504" "$work/put.err"; then
    scrub <"$work/put.err" >&2
    fail "Event Grid refused the subscription $INPUT_CONTAINER-blob-created"
  fi
  if [ "$attempt" -ge "$create_tries" ]; then
    scrub <"$work/put.err" >&2
    fail "Event Grid could not validate the webhook after $create_tries tries; the app did not answer its handshake. Check that the app runs (Application Insights), then re-run: azd hooks run postdeploy"
  fi
  say "waiting for the function app to answer Event Grid's webhook validation handshake (a cold app starts slowly): try $attempt/$create_tries failed, next in ${pause}s"
  sleep "$pause"
  attempt=$((attempt + 1))
  pause=$((pause * 2))
  [ "$pause" -le "$backoff_cap" ] || pause=$backoff_cap
done
say "Event Grid delivers BlobCreated in '$INPUT_CONTAINER' to $BLOB_TRIGGER_FUNCTION_NAME"
