# Sourced by the azd hooks (preflight.sh, post-deploy.sh). POSIX sh; needs only az and azd.
# Every az command is pinned to azd's subscription (AZURE_SUBSCRIPTION_ID), never az's default one:
# `azs` adds --subscription; `az rest` has no such option, its ARM path names the subscription and
# az takes the token for that subscription from the path (azure-cli #14370).

fail() { echo "$HOOK: $*" >&2; exit 1; }
say() { echo "$HOOK: $*"; }

# azd exports the environment's values to hooks; read any that are missing from azd itself, once.
_azd_values=""
_azd_loaded=""
_azd_value() {
  printf '%s\n' "$_azd_values" | sed -n "s/^$1=\"\{0,1\}\([^\"]*\)\"\{0,1\}\$/\1/p" | head -n 1
}

# load NAME...: each from the environment, else from azd's environment (empty if neither has it).
load() {
  for _name in "$@"; do
    eval "_current=\${$_name:-}"
    if [ -z "$_current" ]; then
      if [ -z "$_azd_loaded" ]; then  # not in a subshell: the values are kept for the next names
        _azd_values=$(azd env get-values) || fail "'azd env get-values' failed"
        _azd_loaded=1
      fi
      _current=$(_azd_value "$_name")
      eval "$_name=\$_current"
    fi
    export "${_name?}"
  done
}

# require NAME...: each must be set (after load).
require() {
  for _name in "$@"; do
    eval "_current=\${$_name:-}"
    [ -n "$_current" ] || fail "$_name is not set in the azd environment (azd env set $_name ...; see docs/deploy.md)"
  done
}

# az, pinned to azd's subscription.
azs() { az "$@" --subscription "$AZURE_SUBSCRIPTION_ID"; }

# ARM path of a resource group of azd's subscription, for `az rest`.
rg_path() { printf '/subscriptions/%s/resourceGroups/%s' "$AZURE_SUBSCRIPTION_ID" "$AZURE_RESOURCE_GROUP"; }

# Anything az printed may quote a webhook URL: its key (code=...) never reaches the output.
scrub() { sed 's/code=[^&"'"'"' ]*/code=***/g'; }

need_tools() {
  for _tool in az azd; do
    command -v "$_tool" >/dev/null 2>&1 || fail "'$_tool' is required (see docs/deploy.md)"
  done
}
