"""Write the benchmark report: markdown (summary table, one section per item) + a PNG chart + JSON figures."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from .machine import Machine
from .model import Chart, ItemResult


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def ratio_text(ratio: float | None) -> str:
    if ratio is None:
        return ""
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "**MISSED**")


def summary_rows(items: Sequence[ItemResult]) -> list[list[str]]:
    rows = []
    for item in items:
        if item.error is not None:
            rows.append([item.key, f"{item.title}: did not complete", "", "", "", item.target, "**FAILED**"])
            continue
        for f in item.findings:
            rows.append([item.key, f.measure, f.ours, f.baseline,
                         ratio_text(f.ratio), f.target, verdict(f.met)])
    return rows


SUMMARY_COLUMNS = ["#", "measure", "ours", "baseline", "ours/baseline", "target", "verdict"]


def markdown(items: Sequence[ItemResult], machine: Machine, command: str, size: str, seconds: float,
             chart_name: str | None) -> str:
    lines = [f"# Benchmark results ({size} size)", "",
             f"- Date and machine: {machine.describe()}",
             f"- Command: `{command}`",
             f"- Total wall time: {seconds / 60:.1f} min", "",
             "Each figure is compared with its baseline measured in the same run, side by side; values are "
             "medians unless a percentile is named. Ratios are ours / baseline (lower is better).", "",
             "## Summary", ""]
    lines += _table(SUMMARY_COLUMNS, summary_rows(items))
    missed = [i for i in items if i.targets_met is False]
    lines += ["", f"Targets: {sum(1 for i in items if i.targets_met)} item(s) met, {len(missed)} missed"
              + (f" ({', '.join(i.key for i in missed)})" if missed else "") + "."]
    if chart_name:
        lines += ["", f"![benchmark chart]({chart_name})"]
    for item in items:
        lines += ["", f"## {item.key}. {item.title}", "",
                  f"- Baseline: {item.baseline}", f"- Target: {item.target}",
                  f"- Verdict: {verdict(item.targets_met)} ({item.seconds:.0f} s to measure)"]
        if item.error is not None:
            lines += ["", f"The item did not complete: `{item.error}`"]
        if item.rows:
            lines += [""] + _table(item.columns, item.rows)
        if item.notes:
            lines += [""] + [f"- {note}" for note in item.notes]
    return "\n".join(lines) + "\n"


def _draw(ax, chart: Chart) -> None:
    n_series = max(1, len(chart.series))
    width = 0.8 / n_series
    xs = range(len(chart.groups))
    for i, (name, values) in enumerate(chart.series.items()):
        offsets = [x - 0.4 + width * (i + 0.5) for x in xs]
        ax.bar(offsets, values, width=width, label=name)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(chart.groups, rotation=30 if len(chart.groups) > 3 else 0, ha="right" if len(chart.groups) > 3 else "center",
                       fontsize=7)
    ax.set_title(chart.title, fontsize=9)
    ax.set_ylabel(chart.ylabel, fontsize=8)
    if chart.log:
        ax.set_yscale("log")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=7)


def png(items: Sequence[ItemResult], path: Path, title: str) -> bool:
    charts = [i.chart for i in items if i.chart is not None and i.error is None]
    if not charts:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 2 if len(charts) > 1 else 1
    rows = math.ceil(len(charts) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 3.6 * rows), squeeze=False)
    for ax, chart in zip((a for row in axes for a in row), charts):
        _draw(ax, chart)
    for ax in list(a for row in axes for a in row)[len(charts):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(items: Sequence[ItemResult], machine: Machine, out_dir: Path, stem: str, command: str, size: str,
          seconds: float) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    chart_path = out_dir / f"{stem}.png"
    has_chart = png(items, chart_path, f"mp4-to-mp3 benchmarks, {machine.date}, {machine.nproc} CPU {machine.cpu_model}")
    md_path = out_dir / f"{stem}.md"
    md_path.write_text(markdown(items, machine, command, size, seconds, chart_path.name if has_chart else None))
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps({"machine": machine.to_json(), "command": command, "size": size,
                                     "seconds": round(seconds, 1), "items": [i.to_json() for i in items]},
                                    indent=1, default=str))
    paths = {"markdown": md_path, "json": json_path}
    if has_chart:
        paths["png"] = chart_path
    return paths
