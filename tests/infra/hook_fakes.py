"""Fake `az` and `azd` for running the azd hooks (infra/scripts/*.sh) offline, on a PATH without Python.

The fakes are small POSIX shell scripts that log their argv (one call per line, arguments tab-separated)
and behave like the real tools where the hooks depend on it:
- az's *default* subscription is another one than azd's: any az command without `--subscription <azd's>`
  (or, for `az rest`, whose ARM path does not name azd's subscription) fails with ResourceGroupNotFound,
  as it would against the wrong subscription;
- the Event Grid subscription is remembered between runs (a PUT stores its state, a GET reads it back,
  getFullUrl returns the stored endpoint), so a second run sees what the first created;
- the first FAKE_PUT_FAILS PUTs fail with Event Grid's webhook validation error, quoting the endpoint URL
  with its key, like a cold app missing the handshake; the next FAKE_ASYNC_FAILS PUTs are accepted but the
  subscription's provisioning then ends Failed (Event Grid creates subscriptions asynchronously); every
  accepted PUT reads "Creating" once before its outcome.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
AZD_SUBSCRIPTION = "11111111-1111-1111-1111-111111111111"
DEFAULT_SUBSCRIPTION = "99999999-9999-9999-9999-999999999999"  # az's own default: the wrong one
KEY = "s3cr3t-blobs-extension-key"
# The POSIX tools the hooks may use; the test PATH holds these and the fakes, nothing else (no Python, no jq).
POSIX_TOOLS = ("sh", "sed", "grep", "cat", "mktemp", "rm", "cmp", "tr", "cut", "head", "sleep", "dirname",
               "printf", "cp", "mkdir", "echo", "wc", "test", "[", "expr")

FAKE_AZ = r"""#!/bin/sh
log="$FAKE_LOG"
printf '%s' "az" >>"$log"; for a in "$@"; do printf '\t%s' "$a" >>"$log"; done; echo >>"$log"
wrong() { echo "ERROR: (ResourceGroupNotFound) Resource group 'rg-test' could not be found in subscription $DEFAULT_SUB." >&2; exit 3; }
if [ "$1" = rest ]; then
  case "$*" in *"/subscriptions/$AZD_SUB/"*) ;; *) wrong ;; esac
else
  pinned=""; prev=""
  for a in "$@"; do [ "$prev" = "--subscription" ] && pinned="$a"; prev="$a"; done
  [ "$1 $2" = "account show" ] || [ "$pinned" = "$AZD_SUB" ] || wrong
fi
count() { n=$(cat "$FAKE_DIR/$1" 2>/dev/null || echo 0); n=$((n+1)); echo "$n" >"$FAKE_DIR/$1"; echo "$n"; }
case "$1 $2" in
  "account show") echo "$DEFAULT_SUB" ;;
  "functionapp keys")
     n=$(count key_calls)
     if [ "$n" -ge "${FAKE_KEY_AFTER:-1}" ]; then echo "$FAKE_KEY"; fi ;;
  "functionapp list-flexconsumption-locations") printf '%s\n' $FAKE_FLEX ;;
  "batch location") [ -f "$FAKE_DIR/sku.tsv" ] && cat "$FAKE_DIR/sku.tsv" ;;
  "batch account")
     if [ -f "$FAKE_DIR/quota.tsv" ]; then cat "$FAKE_DIR/quota.tsv"
     else echo "ERROR: (ResourceNotFound) The Resource 'Microsoft.Batch/batchAccounts/x' was not found." >&2; exit 3; fi ;;
  "rest --method")
     case "$3 $*" in
       get*eventSubscriptions*)
          if [ ! -f "$FAKE_DIR/eg-state.txt" ]; then
            echo "ERROR: (ResourceNotFound) The Resource 'eventSubscriptions/input-blob-created' was not found." >&2; exit 1
          fi
          case "$*" in
            *"join("*) cat "$FAKE_DIR/eg-state.txt" ;;
            *) # provisioningState alone: "Creating" once after each PUT, then the stored outcome
               if [ -f "$FAKE_DIR/eg-creating" ]; then rm "$FAKE_DIR/eg-creating"; echo Creating
               else cut -d'|' -f1 "$FAKE_DIR/eg-state.txt"; fi ;;
          esac ;;
       post*getFullUrl*) cat "$FAKE_DIR/eg-fullurl.txt" ;;
       put*eventSubscriptions*)
          n=$(count put_calls)
          body=""; for a in "$@"; do case "$a" in @*) body="${a#@}" ;; esac; done
          url=$(sed -n 's/.*"endpointUrl": "\([^"]*\)".*/\1/p' "$body")
          if [ "$n" -le "${FAKE_PUT_FAILS:-0}" ]; then
            echo "ERROR: (Url validation) Webhook validation handshake failed for $url. Http POST request failed with response code Unknown." >&2
            exit 1
          fi
          cp "$body" "$FAKE_DIR/eventgrid-body.json"
          subject=$(sed -n 's/.*"subjectBeginsWith": "\([^"]*\)".*/\1/p' "$body")
          outcome=Succeeded
          # accepted, then the handshake fails while provisioning (the asynchronous form of the same failure)
          [ "$n" -le "$((${FAKE_PUT_FAILS:-0} + ${FAKE_ASYNC_FAILS:-0}))" ] && outcome=Failed
          echo "$outcome|${url%%\?*}|$subject" >"$FAKE_DIR/eg-state.txt"
          touch "$FAKE_DIR/eg-creating"
          echo "$url" >"$FAKE_DIR/eg-fullurl.txt" ;;
     esac ;;
esac
exit 0
"""
FAKE_AZD = r"""#!/bin/sh
printf '%s' "azd" >>"$FAKE_LOG"; for a in "$@"; do printf '\t%s' "$a" >>"$FAKE_LOG"; done; echo >>"$FAKE_LOG"
cat "$FAKE_DIR/azd-values.env"
"""

AZD_VALUES = {
    "AZURE_SUBSCRIPTION_ID": AZD_SUBSCRIPTION, "AZURE_LOCATION": "westeurope",
    "AZURE_RESOURCE_GROUP": "rg-test", "AZURE_FUNCTION_APP_NAME": "func-abc",
    "AZURE_FUNCTION_APP_HOSTNAME": "func-abc.azurewebsites.net", "AZURE_BATCH_ACCOUNT_NAME": "baabc",
    "EVENTGRID_SYSTEM_TOPIC_NAME": "evgt-abc", "INPUT_CONTAINER": "input",
    "BLOB_TRIGGER_FUNCTION_NAME": "process_upload",
}


@dataclass
class Run:
    result: subprocess.CompletedProcess
    calls: list[list[str]]

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr

    def az(self, *prefix: str) -> list[list[str]]:
        return [c for c in self.calls if c[: len(prefix) + 1] == ["az", *prefix]]


class Fakes:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        for name, body in (("az", FAKE_AZ), ("azd", FAKE_AZD)):
            (self.bin / name).write_text(body)
            (self.bin / name).chmod(0o755)
        # A system directory with only POSIX tools: the hooks must not find Python (or jq) anywhere.
        self.sys = root / "sysbin"
        self.sys.mkdir()
        for tool in POSIX_TOOLS:
            found = shutil.which(tool)
            if found:
                (self.sys / tool).symlink_to(found)
        self.values = dict(AZD_VALUES)
        self.write_values()

    def write_values(self) -> None:
        (self.root / "azd-values.env").write_text("".join(f'{k}="{v}"\n' for k, v in self.values.items()))

    @property
    def path(self) -> str:
        return f"{self.bin}{os.pathsep}{self.sys}"

    def run(self, script: str, scripts: Path = REPO / "infra" / "scripts", **env: str) -> Run:
        full_env = {"PATH": self.path, "FAKE_LOG": str(self.root / "calls.log"), "FAKE_DIR": str(self.root),
                    "FAKE_KEY": KEY, "AZD_SUB": AZD_SUBSCRIPTION, "DEFAULT_SUB": DEFAULT_SUBSCRIPTION,
                    "FAKE_FLEX": "westeurope northeurope eastus", "HOME": str(self.root),
                    "POST_DEPLOY_KEY_SECONDS": "0", "POST_DEPLOY_KEY_TRIES": "3",
                    "POST_DEPLOY_BACKOFF_SECONDS": "0", "POST_DEPLOY_SETTLE_SECONDS": "0", **env}
        (self.root / "calls.log").unlink(missing_ok=True)
        result = subprocess.run([str(self.sys / "sh"), str(scripts / script)], cwd=self.root,
                                env=full_env, capture_output=True, text=True, timeout=60)
        log = (self.root / "calls.log").read_text() if (self.root / "calls.log").exists() else ""
        return Run(result, [line.split("\t") for line in log.splitlines()])
