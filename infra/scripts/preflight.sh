#!/bin/sh
# azd preprovision and postprovision hook (azure.yaml): what would make a first `azd up` fail later, or
# leave every upload queued forever, checked before it costs time. Needs az, azd and a POSIX shell.
#  - the region offers Flex Consumption (unless HOSTING_PLAN=Dedicated);
#  - Batch offers POOL_VM_SIZE in the region; the size has a local temporary disk that holds
#    2 x MAX_INPUT_BYTES per task slot (docs/deploy.md, "Disk per slot"); slots <= 4 x vCPUs (Batch's cap);
#  - the Batch account's core quota for the size's family (dedicated) or its low-priority quota (Spot)
#    covers POOL_MAX_NODES x vCPUs. The account exists only after provisioning: before the first one the
#    quota is checked by the postprovision run of this same script, which stops `azd up` before the code
#    is deployed. PREFLIGHT_QUOTA=warn reports a shortfall without failing.
# Defaults are main.bicep's (tests/infra/test_preflight.py keeps them equal).
set -eu

HOOK=preflight
cd "$(dirname "$0")/../.."
. infra/scripts/common.sh

need_tools
load AZURE_SUBSCRIPTION_ID AZURE_LOCATION HOSTING_PLAN POOL_VM_SIZE POOL_MAX_NODES POOL_TASK_SLOTS_PER_NODE \
     USE_SPOT MAX_INPUT_BYTES AZURE_RESOURCE_GROUP AZURE_BATCH_ACCOUNT_NAME
require AZURE_SUBSCRIPTION_ID AZURE_LOCATION
hosting=${HOSTING_PLAN:-FlexConsumption}
size=${POOL_VM_SIZE:-Standard_D2ds_v5}
max_nodes=${POOL_MAX_NODES:-4}
slots=${POOL_TASK_SLOTS_PER_NODE:-2}
spot=${USE_SPOT:-false}
max_input=${MAX_INPUT_BYTES:-10737418240}
region=$(printf '%s' "$AZURE_LOCATION" | tr 'A-Z' 'a-z' | tr -d ' ')
problems=0
problem() { echo "$HOOK: PROBLEM: $*" >&2; problems=$((problems + 1)); }

# ---- region: Flex Consumption
if [ "$hosting" = FlexConsumption ]; then
  flex=$(azs functionapp list-flexconsumption-locations --query "[].name" -o tsv) \
    || fail "could not list the Flex Consumption regions (az functionapp list-flexconsumption-locations)"
  if printf '%s\n' "$flex" | tr 'A-Z' 'a-z' | tr -d ' ' | grep -qx "$region"; then
    say "ok: $AZURE_LOCATION offers Flex Consumption"
  else
    problem "$AZURE_LOCATION does not offer Flex Consumption. Pick a region that does (az functionapp list-flexconsumption-locations -o table), then: azd env set AZURE_LOCATION <region>; or run the app on an App Service plan that bills while idle: azd env set HOSTING_PLAN Dedicated"
  fi
fi

# ---- region: the VM size for Batch, its vCPUs and temporary disk
sku=$(azs batch location list-skus --location "$region" \
        --query "[?name=='$size'] | [0].[familyName, capabilities[?name=='vCPUs'].value | [0], capabilities[?name=='MaxResourceVolumeMB'].value | [0]]" \
        -o tsv) || fail "could not list Batch's VM sizes in $AZURE_LOCATION (az batch location list-skus)"
family=$(printf '%s\n' "$sku" | cut -f1)
vcpus=$(printf '%s\n' "$sku" | cut -f2)
temp_mb=$(printf '%s\n' "$sku" | cut -f3)
case "$vcpus" in ''|*[!0-9]*) vcpus="" ;; esac
case "$temp_mb" in ''|*[!0-9]*) temp_mb=0 ;; esac
if [ -z "$family" ] || [ -z "$vcpus" ]; then
  problem "Batch does not offer $size in $AZURE_LOCATION (az batch location list-skus --location $region -o table lists what it does); azd env set POOL_VM_SIZE <size>"
else
  say "ok: Batch offers $size in $AZURE_LOCATION ($vcpus vCPUs, family $family)"
  if [ "$slots" -gt $((4 * vcpus)) ]; then
    problem "POOL_TASK_SLOTS_PER_NODE=$slots exceeds Batch's limit for $size (4 x $vcpus vCPUs); one per vCPU: azd env set POOL_TASK_SLOTS_PER_NODE $vcpus"
  elif [ "$slots" -ne "$vcpus" ]; then
    say "note: $slots task slots on $vcpus vCPUs (one per vCPU is what the defaults assume)"
  fi
  need_mb=$((slots * 2 * max_input / 1048576))
  if [ "$temp_mb" -eq 0 ]; then
    problem "$size has no local temporary disk: task files would land on the OS disk. Use a size with a 'd' (e.g. Standard_D2ds_v5): azd env set POOL_VM_SIZE <size>"
  elif [ "$temp_mb" -lt "$need_mb" ]; then
    problem "$size's temporary disk ($((temp_mb / 1024)) GiB) cannot hold $slots slots x 2 x MAX_INPUT_BYTES ($((need_mb / 1024)) GiB). Lower MAX_INPUT_BYTES or POOL_TASK_SLOTS_PER_NODE, or pick a bigger size"
  else
    say "ok: temporary disk $((temp_mb / 1024)) GiB >= $slots slots x 2 x MAX_INPUT_BYTES ($((need_mb / 1024)) GiB)"
  fi
fi

# ---- Batch core quota (once the account exists)
if [ -n "$vcpus" ] && [ -n "${AZURE_BATCH_ACCOUNT_NAME:-}" ] && [ -n "${AZURE_RESOURCE_GROUP:-}" ]; then
  if quota=$(azs batch account show -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_BATCH_ACCOUNT_NAME" \
               --query "[dedicatedCoreQuota, lowPriorityCoreQuota, dedicatedCoreQuotaPerVMFamilyEnforced, dedicatedCoreQuotaPerVMFamily[?name=='$family'].coreQuota | [0]]" \
               -o tsv 2>/dev/null); then
    dedicated=$(printf '%s\n' "$quota" | cut -f1)
    low=$(printf '%s\n' "$quota" | cut -f2)
    enforced=$(printf '%s\n' "$quota" | cut -f3)
    per_family=$(printf '%s\n' "$quota" | cut -f4)
    need=$((max_nodes * vcpus))
    if [ "$spot" = true ]; then
      kind="low-priority (Spot) cores"; have=$low; quota_type=LowPriority
    elif [ "$(printf '%s' "$enforced" | tr 'A-Z' 'a-z')" = true ]; then
      kind="dedicated cores of family $family"; have=$per_family; quota_type=Dedicated
    else
      kind="dedicated cores"; have=$dedicated; quota_type=Dedicated
    fi
    case "$have" in ''|*[!0-9]*) have=0 ;; esac
    if [ "$have" -ge "$need" ]; then
      say "ok: Batch account $AZURE_BATCH_ACCOUNT_NAME has $have $kind >= POOL_MAX_NODES x $vcpus = $need"
    else
      account_id="$(rg_path)/providers/Microsoft.Batch/batchAccounts/$AZURE_BATCH_ACCOUNT_NAME"
      message="Batch account $AZURE_BATCH_ACCOUNT_NAME has $have $kind; POOL_MAX_NODES=$max_nodes x $vcpus vCPUs needs $need. Without them the pool never gets nodes and every upload stays queued.
  Request more: Azure portal > $AZURE_BATCH_ACCOUNT_NAME > Quotas > Request quota increase ($quota_type, $family, $need cores), or
    az quota update --scope \"$account_id\" --resource-name $family --limit-object value=$need --resource-type $quota_type
  (quota requests take minutes to two business days). Or lower the node cap: azd env set POOL_MAX_NODES $((have / vcpus))"
      if [ "${PREFLIGHT_QUOTA:-fail}" = warn ]; then
        echo "$HOOK: WARNING: $message" >&2
      else
        problem "$message
  (PREFLIGHT_QUOTA=warn deploys anyway)"
      fi
    fi
  else
    say "Batch account $AZURE_BATCH_ACCOUNT_NAME not found yet: its quota is checked after provisioning"
  fi
else
  say "the Batch account does not exist yet: its core quota is checked after provisioning (postprovision)"
fi

[ "$problems" -eq 0 ] || fail "$problems problem(s) above: fix them and run azd up again"
say "all checks passed"
