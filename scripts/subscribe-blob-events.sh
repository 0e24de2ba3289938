#!/bin/sh
# azd postdeploy hook: subscribe the storage account's Event Grid system topic to each blob trigger of the deployed
# function app - one subscription per trigger, to the blob extension's webhook
# (/runtime/webhooks/blobs?functionName=Host.Functions.<fn>&code=<blobs_extension key>), filtered to BlobCreated in
# that trigger's container (and to its path's suffix, e.g. .ilearner), retried for a day and dead-lettered to a
# container after that.
#
# The triggers are read from the deployed app (az functionapp function list), so the subscriptions always match the
# code that runs. Idempotent: each subscription is PUT by name (create or update), so running it again leaves the
# same subscriptions. Needs: az (logged in), and the azd environment's values in the environment (azd sets them for
# hooks): RESOURCE_GROUP, AZURE_FUNCTION_APP_NAME, EVENTGRID_SYSTEM_TOPIC_NAME, AZURE_STORAGE_ACCOUNT_ID,
# EVENTGRID_DEADLETTER_CONTAINER; AZURE_SUBSCRIPTION_ID (else the signed-in account's). POSIX sh (azd runs it with sh).
set -eu

command -v az >/dev/null 2>&1 || { echo "subscribe-blob-events: the Azure CLI (az) is required" >&2; exit 1; }
for name in RESOURCE_GROUP AZURE_FUNCTION_APP_NAME EVENTGRID_SYSTEM_TOPIC_NAME AZURE_STORAGE_ACCOUNT_ID \
            EVENTGRID_DEADLETTER_CONTAINER; do
  eval "value=\${$name:-}"
  if [ -z "$value" ]; then
    echo "subscribe-blob-events: $name is not set (run it as the azd postdeploy hook, or export the azd env)" >&2
    exit 1
  fi
done

api_version="2025-02-15"
subscription="${AZURE_SUBSCRIPTION_ID:-$(az account show --query id -o tsv)}"

# The blobs_extension system key appears once the host has started with a blob trigger: wait for it a little.
key=""
for attempt in 1 2 3 4 5 6; do
  key="$(az functionapp keys list -g "$RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" --query "systemKeys.blobs_extension" -o tsv 2>/dev/null || true)"
  [ -n "$key" ] && [ "$key" != "None" ] && break
  key=""
  echo "subscribe-blob-events: waiting for the blobs_extension key (try $attempt of 6)"
  sleep 10
done
[ -n "$key" ] || { echo "subscribe-blob-events: the app has no blobs_extension key; is the code deployed?" >&2; exit 1; }

host="$(az functionapp show -g "$RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" --query defaultHostName -o tsv)"
triggers="$(az functionapp function list -g "$RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" \
  --query "[].[name, config.bindings[?type=='blobTrigger'] | [0].path]" -o tsv)"

count=0
tab="$(printf '\t')"
while IFS="$tab" read -r full_name path; do
  [ -n "${path:-}" ] && [ "$path" != "None" ] || continue
  function_name="${full_name##*/}"
  container="${path%%/*}"
  pattern="${path#*/}"
  suffix=""
  case "$pattern" in *"}"*) suffix="${pattern##*\}}" ;; esac
  name="$(printf 'blob-%s' "$function_name" | tr '_' '-' | cut -c1-64)"
  ends_with=""
  [ -n "$suffix" ] && ends_with="\"subjectEndsWith\": \"$suffix\","
  body="$(cat <<JSON
{
  "properties": {
    "destination": {
      "endpointType": "WebHook",
      "properties": {
        "endpointUrl": "https://$host/runtime/webhooks/blobs?functionName=Host.Functions.$function_name&code=$key",
        "maxEventsPerBatch": 1
      }
    },
    "filter": {
      "includedEventTypes": ["Microsoft.Storage.BlobCreated"],
      "subjectBeginsWith": "/blobServices/default/containers/$container/blobs/",
      $ends_with
      "isSubjectCaseSensitive": false
    },
    "eventDeliverySchema": "EventGridSchema",
    "retryPolicy": {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440},
    "deadLetterWithResourceIdentity": {
      "identity": {"type": "SystemAssigned"},
      "deadLetterDestination": {
        "endpointType": "StorageBlob",
        "properties": {"resourceId": "$AZURE_STORAGE_ACCOUNT_ID", "blobContainerName": "$EVENTGRID_DEADLETTER_CONTAINER"}
      }
    }
  }
}
JSON
)"
  url="https://management.azure.com/subscriptions/$subscription/resourceGroups/$RESOURCE_GROUP/providers/Microsoft.EventGrid/systemTopics/$EVENTGRID_SYSTEM_TOPIC_NAME/eventSubscriptions/$name?api-version=$api_version"
  az rest --method put --url "$url" --body "$body" --output none
  echo "subscribe-blob-events: $name -> $function_name ($container/*$suffix)"
  count=$((count + 1))
done <<EOF
$triggers
EOF

if [ "$count" -eq 0 ]; then
  echo "subscribe-blob-events: the deployed app lists no blob trigger; nothing subscribed" >&2
  exit 1
fi
echo "subscribe-blob-events: $count subscription(s) in place"
