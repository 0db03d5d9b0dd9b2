"""The "day at scale" harness (bench/scale.py) at a tiny size: a real stack (Azurite, the Batch emulator in scale
mode), the app's trigger and timer in a child process, the verification read through shared.ledger.
About a minute; the sizes the issue asks for run with `./dev bench --only scale`."""
from __future__ import annotations

import json
from pathlib import Path

from bench import scale

TINY = scale.Options(tick_seconds=0.5, tail_seconds=3,
                     phases=(("idle", 1), ("burst", 3, 0.6), ("idle", 2), ("burst", 2, 0.4), ("idle", 1)))


def test_day_at_tiny_size_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    result = scale.run((50,), out_dir=tmp_path / "results", options=TINY, work_root=tmp_path)
    written = json.loads((tmp_path / "results" / "scale.json").read_text())
    assert list(written) == ["50"]
    figures = written["50"]
    assert set(scale.KEYS) <= set(figures)
    assert figures["uploads"] == 50
    assert figures["lost"] == 0 and figures["duplicated"] == 0 and figures["history_changed"] == 0
    assert figures["drained"] and figures["ticks"] > 5 and figures["ticks_failed"] == 0
    # every upload cost the trigger its Batch add; re-deliveries and the timer's reads come on top
    assert 1.0 <= figures["batch_calls_per_upload"] < 20
    assert figures["table_ops_per_upload"] >= 1.0
    assert figures["tick_p95_s"] > 0 and figures["max_tick_calls"] > 0 and figures["peak_rss_mb"] > 20
    assert figures["row_states"] == {"succeeded": 50}
    # history rows carry no completion-event marker: only the day's uploads are published (at most one each)
    assert figures["timer_per_upload"]["other"] <= 1.5
    assert (tmp_path / "results" / "scale.png").stat().st_size > 10_000
    assert result.findings[-1].measure.startswith("lost / duplicated") and result.findings[-1].met


def test_results_merge_sizes_and_the_size_list_parses(tmp_path: Path) -> None:
    entry = {k: 1 for k in scale.KEYS} | {"tick_p50_s": 0.5, "max_tick_calls": 3, "job_tasks_at_end": 2}
    scale.write({"1000": entry}, tmp_path)
    merged = scale.write({"300": entry | {"uploads": 300}}, tmp_path)
    assert list(merged) == ["300", "1000"]
    assert list(json.loads((tmp_path / "scale.json").read_text())) == ["300", "1000"]
    assert scale.parse_sizes("1000, 10_000") == (1000, 10000)
