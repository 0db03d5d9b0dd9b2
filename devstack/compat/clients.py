"""The clients a compatibility run tries, and how each one is run.

- `rest`: raw REST signed per the documentation (httpx, in this process; no install).
- `curl`: the same by hand in bash with curl and openssl (scenarios/curl_rest.sh).
- `sdk-*`: an azure-batch release in its own venv, running a scenario script under scenarios/.
- `tutorial-*`: the ffmpeg tutorial's flow with that era's azure-batch and azure-storage-blob (BlockBlobService).
- `azcli`: the az CLI (an existing `az`, or azure-cli installed into a venv).
- `formulas`: public autoscale formulas (docs, SDK tests, tools; formulas.py) through this venv's azure-batch.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .results import ClientResult, Step, parse_steps
from .venvs import VenvError, ensure_venv

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SCENARIO_TIMEOUT = 600.0


@dataclass(frozen=True)
class ClientSpec:
    key: str                              # name on the command line
    client: str                           # what a person would call it
    version: str
    kind: str                             # "rest" | "shell" | "venv" | "azcli" | "formulas"
    requirements: tuple[str, ...] = ()    # pip requirements of the client's venv
    scenario: str | None = None           # script in scenarios/ (kind "venv")
    note: str = ""
    slow: bool = True                     # needs a venv or an external tool

    def describe(self) -> str:
        return f"{self.key:16} {self.client} {self.version}" + (f" ({self.note})" if self.note else "")


CLIENTS: tuple[ClientSpec, ...] = (
    ClientSpec("rest", "raw REST (httpx, docs-form Shared Key)", "api 2024-07-01.20.0", "rest", slow=False),
    ClientSpec("curl", "curl + openssl (bash, docs-form Shared Key)", "api 2024-07-01.20.0", "shell",
               scenario="curl_rest.sh", slow=False),
    ClientSpec("azcli", "az CLI", "installed", "azcli", note="azure-batch 15.0.0b1 inside"),
    ClientSpec("formulas", "public autoscale formulas via azure-batch", "this venv", "formulas", slow=False,
               note="evaluate_pool_auto_scale, recorded answers compared"),
    ClientSpec("sdk-14.2.0", "azure-batch", "14.2.0", "venv", ("azure-batch==14.2.0",), "msrest_sdk.py",
               note="last msrest-based release"),
    ClientSpec("sdk-13.0.0", "azure-batch", "13.0.0", "venv", ("azure-batch==13.0.0",), "msrest_sdk.py"),
    ClientSpec("sdk-12.0.0", "azure-batch", "12.0.0", "venv", ("azure-batch==12.0.0",), "msrest_sdk.py"),
    ClientSpec("sdk-10.0.0", "azure-batch", "10.0.0", "venv", ("azure-batch==10.0.0",), "msrest_sdk.py"),
    ClientSpec("tutorial-4.1.3", "ffmpeg tutorial flow", "azure-batch 4.1.3 + azure-storage-blob 1.4.0", "venv",
               ("azure-batch==4.1.3", "azure-storage-blob==1.4.0"), "tutorial.py"),
    ClientSpec("tutorial-5.1.1", "ffmpeg tutorial flow", "azure-batch 5.1.1 + azure-storage-blob 1.4.0", "venv",
               ("azure-batch==5.1.1", "azure-storage-blob==1.4.0"), "tutorial.py",
               note="the sample's requirements.txt"),
    ClientSpec("tutorial-6.0.0", "ffmpeg tutorial flow", "azure-batch 6.0.0 + azure-storage-blob 2.1.0", "venv",
               ("azure-batch==6.0.0", "azure-storage-blob==2.1.0"), "tutorial.py"),
)


def by_key(keys: list[str] | None) -> list[ClientSpec]:
    if not keys:
        return list(CLIENTS)
    known = {c.key: c for c in CLIENTS}
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise KeyError(f"unknown client(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[k] for k in keys]


@dataclass
class RunContext:
    """What a client run needs from the caller: endpoints (COMPAT_* env), scratch space, venv cache."""

    env: dict[str, str]
    work: Path
    venv_cache: Path
    prefix_of: Callable[[ClientSpec], str] = field(default=lambda spec: spec.key.replace(".", "")[:12])


def run_script_client(spec: ClientSpec, ctx: RunContext) -> ClientResult:
    """Run the client's scenario script (in its venv, or with bash for kind "shell") and collect its steps."""
    result = ClientResult(spec.key, spec.client, spec.version)
    started = time.monotonic()
    assert spec.scenario is not None
    if spec.kind == "shell":
        missing = [tool for tool in ("bash", "curl", "openssl", "awk") if shutil.which(tool) is None]
        if missing:
            result.setup_error = f"needs {', '.join(missing)} on PATH"
            return result
        interpreter = "bash"
    else:
        try:
            interpreter = str(ensure_venv(ctx.venv_cache, spec.key, spec.requirements))
        except VenvError as exc:
            result.setup_error = str(exc)
            return result
    env = {**_clean_env(), **ctx.env, "COMPAT_PREFIX": ctx.prefix_of(spec), "PYTHONUNBUFFERED": "1"}
    log = ctx.work / f"{spec.key}.log"
    try:
        proc = subprocess.run([interpreter, str(SCENARIOS / spec.scenario)], cwd=SCENARIOS, env=env,
                              capture_output=True, text=True, timeout=SCENARIO_TIMEOUT)
        output, stderr, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        output, stderr, code = _text(exc.stdout), _text(exc.stderr), None
    log.write_text(output + "\n--- stderr ---\n" + stderr)
    result.steps = parse_steps(output)
    if code != 0 and all(s.ok for s in result.steps):
        # The script died outside a step (import error, crash): that is a failure of the client too.
        tail = " | ".join(stderr.strip().splitlines()[-2:]) or f"exit {code}"
        result.steps.append(Step("scenario process", False, 0.0, tail if code is not None else "timed out"))
    result.seconds = time.monotonic() - started
    return result


def _clean_env() -> dict[str, str]:
    # The client venvs must not see the project's venv or app settings.
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("BATCH_", "AZURE_"))}


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.decode(errors="replace")
