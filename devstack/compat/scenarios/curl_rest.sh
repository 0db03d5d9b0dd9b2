#!/usr/bin/env bash
# Raw REST with curl + openssl, signed by hand per "Authenticate requests to the Azure Batch service"
# (learn.microsoft.com/rest/api/batchservice/authenticate-requests-to-the-azure-batch-service): what a shell script
# written from the docs sends. Reads COMPAT_BATCH_URL / COMPAT_BATCH_ACCOUNT / COMPAT_BATCH_KEY / COMPAT_PREFIX and
# prints COMPAT-STEP lines like the Python scenarios.
set -uo pipefail

URL=$COMPAT_BATCH_URL ACCOUNT=$COMPAT_BATCH_ACCOUNT KEY=$COMPAT_BATCH_KEY
API=2024-07-01.20.0
POOL="${COMPAT_PREFIX}-curlpool"
KEY_HEX=$(printf '%s' "$KEY" | base64 -d | od -An -vtx1 | tr -d ' \n')
failures=0

# sign VERB PATH CANONICAL_QUERY CONTENT_LENGTH CONTENT_TYPE DATE -> signature (docs: empty Date line with ocp-date)
sign() {
  local sts
  sts=$(printf '%s\n\n\n%s\n\n%s\n\n\n\n\n\n\nocp-date:%s\n/%s%s%s' "$1" "$4" "$5" "$6" "$ACCOUNT" "$2" "$3")
  printf '%s' "$sts" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$KEY_HEX" -binary | base64 -w0
}

# call NAME EXPECTED_STATUS VERB PATH QUERY CANONICAL_QUERY [BODY]
call() {
  local name=$1 expected=$2 verb=$3 path=$4 query=$5 canonical=$6 body=${7-}
  local date length="" ctype="" status started ended
  date=$(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S GMT')
  local args=(-s -o /tmp/curl_rest_body.$$ -w '%{http_code}' -X "$verb" -H "ocp-date: $date")
  if [ -n "$body" ]; then
    length=${#body} ctype="application/json;odata=minimalmetadata"
    args+=(-H "Content-Type: $ctype" --data-binary "$body")
  fi
  args+=(-H "Authorization: SharedKey $ACCOUNT:$(sign "$verb" "$path" "$canonical" "$length" "$ctype" "$date")")
  started=$(date +%s.%N)
  status=$(curl "${args[@]}" "$URL$path?$query")
  ended=$(date +%s.%N)
  local ok=true detail=""
  if [ "$status" != "$expected" ]; then
    ok=false failures=$((failures + 1))
    detail="HTTP $status (wanted $expected): $(head -c 200 /tmp/curl_rest_body.$$ | tr -d '"\\\n')"
  fi
  printf 'COMPAT-STEP {"step": "%s", "ok": %s, "seconds": %s, "detail": "%s"}\n' \
    "$name" "$ok" "$(awk "BEGIN { printf \"%.3f\", $ended - $started }")" "$detail"
}

POOL_BODY='{"id":"'$POOL'","vmSize":"standard_d2s_v3","virtualMachineConfiguration":{"imageReference":{"publisher":"canonical","offer":"0001-com-ubuntu-server-jammy","sku":"22_04-lts","version":"latest"},"nodeAgentSKUId":"batch.node.ubuntu 22.04"}}'
call "curl POST /pools" 201 POST /pools "api-version=$API" $'\napi-version:'$API "$POOL_BODY"
call "curl GET /pools/{id}" 200 GET "/pools/$POOL" "api-version=$API&timeout=30" $'\napi-version:'$API$'\ntimeout:30'
call "curl GET /pools?maxResults (mixed-case name)" 200 GET /pools "api-version=$API&maxResults=5" \
  $'\napi-version:'$API$'\nmaxresults:5'
call "curl POST /pools duplicate -> 409" 409 POST /pools "api-version=$API" $'\napi-version:'$API "$POOL_BODY"
call "curl DELETE /pools/{id} (no Content-Length)" 202 DELETE "/pools/$POOL" "api-version=$API" $'\napi-version:'$API
rm -f /tmp/curl_rest_body.$$
exit $((failures > 0))
