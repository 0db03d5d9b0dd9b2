"""`python -m devstack.compat [--clients KEY ...] [--az PATH] [--json FILE]`: run clients nobody here wrote
(older azure-batch releases, the ffmpeg tutorial's flow, the az CLI, raw REST) against a private local stack and
print a results table. Independent of ./dev; uses free ports only. Exit code 0 when every client passed."""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from devstack import media

from .azcli import run_azcli
from .clients import CLIENTS, ClientSpec, RunContext, by_key, run_script_client
from .formulas import run_client as run_formulas
from .rest_scenario import run_rest
from .results import ClientResult, render
from .stack import CompatStack
from .venvs import VenvError, default_cache_dir, ensure_venv

CLIP_NAMES = ("LowPriVMs-1.mp4", "LowPriVMs-2.mp4", "LowPriVMs-3.mp4")  # the tutorial's input names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack.compat", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", nargs="+", metavar="KEY", help="clients to run (default: all; see --list)")
    parser.add_argument("--list", action="store_true", help="list the clients and exit")
    parser.add_argument("--az", help="az CLI executable (default: $AZ_CLI, `az` on PATH, else pip-installed)")
    parser.add_argument("--venv-cache", type=Path, default=None,
                        help="where client venvs are cached (default: $DEVSTACK_COMPAT_VENVS or <tmp>/devstack-compat-venvs)")
    parser.add_argument("--work", type=Path, default=None, help="scratch dir for logs (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    return parser.parse_args(argv)


def _prebuild(specs: list[ClientSpec], cache: Path) -> None:
    """Install the client venvs in parallel (network-bound); failures surface again when each client runs."""
    def build(spec: ClientSpec) -> None:
        try:
            ensure_venv(cache, spec.key, spec.requirements)
        except VenvError:
            pass
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(build, [s for s in specs if s.kind == "venv"]))


def run(specs: list[ClientSpec], *, work: Path, cache: Path, az: str | None) -> list[ClientResult]:
    clips = work / "clips"
    for name in CLIP_NAMES:
        media.make_clip(clips / name, seconds=1.0)
    _prebuild(specs, cache)
    results: list[ClientResult] = []
    with CompatStack(work / "stack") as stack:
        ctx = RunContext(env=stack.client_env("", clips), work=work, venv_cache=cache)
        for spec in specs:
            print(f"--> {spec.describe()}", flush=True)
            started = time.monotonic()
            if spec.kind == "rest":
                result = run_rest(stack.batch_url, stack.batch_account, stack.batch_key, "rest")
            elif spec.kind == "azcli":
                result = run_azcli(stack, work, cache, az, clips / CLIP_NAMES[0])
            elif spec.kind == "formulas":
                result = run_formulas(stack)
            else:
                result = run_script_client(spec, ctx)
            result.seconds = time.monotonic() - started
            print(f"    {result.verdict} in {result.seconds:.1f}s", flush=True)
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for spec in CLIENTS:
            print(spec.describe())
        return 0
    try:
        specs = by_key(args.clients)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # SIGTERM unwinds like Ctrl-C, so Azurite (its own process group) and the emulator are stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    cache = args.venv_cache or default_cache_dir()
    work = args.work or Path(tempfile.mkdtemp(prefix="devstack-compat-"))
    work.mkdir(parents=True, exist_ok=True)
    results = run(specs, work=work, cache=cache, az=args.az)
    render(results)
    print(f"logs: {work}")
    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in results], indent=1))
    if args.work is None and all(r.ok for r in results):
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
