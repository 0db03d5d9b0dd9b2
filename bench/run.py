"""Run the benchmarks and write the report: `./.venv/bin/python -m bench.run [--quick] [--only 1,3]`.

Default size takes about 10-15 minutes on a 2-core machine for items 1-6 (item 7 at its default sizes about
2.5 hours; `--sizes 1000,10000` about 20 minutes) and writes bench/results/latest.md (tables),
latest.png (chart) and latest.json (every figure). --quick runs smaller sizes in a few minutes and writes
to $TMPDIR/mp4-to-mp3-bench/ unless --out says otherwise (py-spy profiles go there too). Items:
  1 ffmpeg command     ours vs the tutorial's vs audio decode only, per file
  2 throughput         N files through the whole local pipeline vs the same ffmpeg commands run directly
  3 submission         requests per upload; a burst of uploads: time, lost, duplicated
  4 reconcile          one timer tick at 10,000 completed tasks + 10 changes vs a naive list-all
  5 cost               node-seconds billed vs busy over a bursty day (simulated), three pool designs
  6 latency            upload -> MP3 present, p50/p95, polling vs Event Grid
  7 scale (day at scale) a compressed day at 1,000 / 10,000 / 100,000 uploads (--sizes) with as much history:
                     calls per upload, tick wall, job size, lost/duplicated -> <out>/scale.json, scale.png
An item that fails is reported as failed; the others still run. Exit code 1 when any item failed.
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from . import machine, report
from .model import ItemResult

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# Scratch outside the repository: the one-command run's tests may wipe .devstack/ while a benchmark runs.
SCRATCH = Path(os.environ.get("TMPDIR") or "/tmp") / "mp4-to-mp3-bench"


# Items may also be named: `--only scale`.
ALIASES = {"scale": "7"}


def _items(quick: bool, profile_dir: Path, out_dir: Path, sizes: tuple[int, ...] | None = None
           ) -> dict[str, tuple[str, Callable[[], ItemResult]]]:
    # Imported lazily so `--only 5` does not pay for the pipeline modules' imports.
    def item1() -> ItemResult:
        from . import ffmpeg_cmd
        return ffmpeg_cmd.run(quick)

    def item2() -> ItemResult:
        from . import throughput
        return throughput.run(quick, profile_dir=profile_dir)

    def item3() -> ItemResult:
        from . import submission
        return submission.run(quick)

    def item4() -> ItemResult:
        from . import reconcile_cost
        return reconcile_cost.run(quick)

    def item5() -> ItemResult:
        from . import cost_model
        return cost_model.run(quick)

    def item6() -> ItemResult:
        from . import latency
        return latency.run(quick)

    def item7() -> ItemResult:
        from . import scale
        if quick:
            return scale.run(sizes or scale.QUICK_SIZES, out_dir, scale.Options(tail_seconds=scale.QUICK_TAIL_SECONDS))
        return scale.run(sizes or scale.DEFAULT_SIZES, out_dir)

    return {"1": ("ffmpeg command", item1), "2": ("throughput", item2), "3": ("submission", item3),
            "4": ("reconcile cost", item4), "5": ("cost efficiency", item5), "6": ("latency", item6),
            "7": ("day at scale", item7)}


def _run_item(key: str, title: str, fn: Callable[[], ItemResult]) -> ItemResult:
    started = time.perf_counter()
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - one failing item must not cost the others' figures
        traceback.print_exc()
        result = ItemResult(key=key, title=title, baseline="", target="", error=f"{type(exc).__name__}: {exc}"[:500])
    result.seconds = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes)")
    parser.add_argument("--only", default="", help="comma-separated item numbers, e.g. 1,3 (default: all)")
    parser.add_argument("--sizes", default="", help="item 7: upload counts, e.g. 1000,10000 (default "
                                                    "1000,10000,100000; --quick 100,300)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results directory (default: bench/results, or $TMPDIR/mp4-to-mp3-bench with --quick)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # The app's SDK clients log every request at INFO; the bench's own output is the report.
    for noisy in ("azure", "shared", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    out_dir = args.out or (SCRATCH if args.quick else RESULTS)
    stem = "quick" if args.quick else "latest"
    profile_dir = SCRATCH / "profiles"
    sizes = None
    if args.sizes:
        from .scale import parse_sizes
        sizes = parse_sizes(args.sizes)
    items = _items(args.quick, profile_dir, out_dir, sizes)
    wanted = [ALIASES.get(k.strip(), k.strip()) for k in args.only.split(",") if k.strip()] or list(items)
    unknown = [k for k in wanted if k not in items]
    if unknown:
        parser.error(f"unknown item(s) {unknown}; choose from {', '.join(items)}")

    host = machine.current()
    size = "quick" if args.quick else "default"
    print(f"bench ({size} size) on {host.describe()}", flush=True)
    started = time.perf_counter()
    results = []
    for key in wanted:
        title, fn = items[key]
        print(f"[{key}] {title} ...", flush=True)
        result = _run_item(key, title, fn)
        verdict = "FAILED" if result.error else report.verdict(result.targets_met).replace("*", "")
        print(f"[{key}] {title}: {verdict} ({result.seconds:.0f} s)", flush=True)
        results.append(result)
    seconds = time.perf_counter() - started
    command = "./.venv/bin/python -m bench.run" + (" " + shlex.join(argv if argv is not None else sys.argv[1:])
                                                    if (argv if argv is not None else sys.argv[1:]) else "")
    paths = report.write(results, host, out_dir, stem, command, size, seconds)
    print()
    print("\n".join(report._table(report.SUMMARY_COLUMNS, report.summary_rows(results))))
    print(f"\n{seconds / 60:.1f} min; written: " + ", ".join(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT)
                                                        else str(p) for p in paths.values()))
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
