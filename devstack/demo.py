"""`./dev run`: start the stack, upload sample MP4s as a user would, and show each file's fate live.

Samples are generated with ffmpeg's lavfi sources: a plain clip, one whose name is hostile to a shell,
one without an audio stream (it must fail with a clear reason), one with two audio tracks in a
folder, and a text file (skipped: not work). Progress comes from the ledger table only, exactly
what an operator would see in Storage Explorer.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from devstack import media, stack
from shared.clients import build_clients
from shared.ledger import Col, Ledger
from shared.settings import Settings

TERMINAL = {"succeeded", "failed", "skipped", "rejected"}
STYLE = {"succeeded": "green", "failed": "red", "rejected": "red", "skipped": "yellow",
         "running": "cyan", "queued": "blue"}


@dataclass(frozen=True)
class Sample:
    blob_name: str
    make: str          # which generator: clip | silent | two_tracks | text


SAMPLES = [
    Sample("hello world.mp4", "clip"),
    Sample("$(touch PWNED); rm -rf ~ 'ü' `id`.mp4", "clip"),
    Sample("albums/two tracks.MP4", "two_tracks"),
    Sample("no audio.mp4", "silent"),
    Sample("notes.txt", "text"),
]


def _generate(sample: Sample, folder: Path) -> Path:
    path = folder / f"{sample.make}.bin"
    if path.exists():
        return path
    if sample.make == "clip":
        media.make_clip(path, seconds=6)
    elif sample.make == "two_tracks":
        media.make_clip(path, seconds=4, audio_streams=2)
    elif sample.make == "silent":
        media.make_clip(path, seconds=3, audio_streams=0)
    else:
        path.write_text("not a video\n")
    return path


def _status_table(rows: dict[str, dict]) -> Table:
    table = Table(title="ledger (table 'ledger', one row per upload)", expand=True)
    table.add_column("input blob", overflow="fold")
    table.add_column("state")
    table.add_column("output / reason", overflow="fold")
    for sample in SAMPLES:
        row = rows.get(sample.blob_name, {})
        state = row.get(Col.STATE, "uploaded")
        detail = (row.get(Col.OUTPUT_NAME, "") if state == "succeeded"
                  else row.get(Col.FFMPEG_ERROR) or row.get(Col.FAILURE_MESSAGE) or row.get(Col.REASON) or "")
        table.add_row(sample.blob_name, f"[{STYLE.get(state, 'white')}]{state}[/]", str(detail)[:160])
    return table


def run(timeout: float = 600.0) -> int:
    console = Console()
    console.print("[bold]starting the local stack[/] (Azurite, Batch emulator, dev Functions host)...")
    for c in stack.start():
        console.print(f"  {c.name:15} port {c.port:<6} log {c.log}")
    values = stack.ensure_local_settings()
    os.environ.update(values)
    settings = Settings.from_env(os.environ)
    clients = build_clients(settings)
    ledger = Ledger(clients.ledger_table, settings.job_id)

    folder = stack.STATE_DIR / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    container = clients.blob_service.get_container_client(settings.input_container)
    if not container.exists():
        container.create_container()
    etags: dict[str, str] = {}
    for sample in SAMPLES:
        source = _generate(sample, folder)
        blob = container.get_blob_client(sample.blob_name)
        with source.open("rb") as data:
            result = blob.upload_blob(data, overwrite=True)
        etags[sample.blob_name] = result["etag"]
        console.print(f"uploaded [bold]{sample.blob_name}[/] to container '{settings.input_container}'")

    progress = Progress(TextColumn("converting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    bar = progress.add_task("files", total=len(SAMPLES))
    rows: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    with Live(Group(progress, _status_table(rows)), console=console, refresh_per_second=4) as live:
        while time.monotonic() < deadline:
            rows = _ledger_rows(ledger, etags)
            done = sum(1 for r in rows.values() if r.get(Col.STATE) in TERMINAL)
            progress.update(bar, completed=done)
            live.update(Group(progress, _status_table(rows)))
            if done == len(SAMPLES):
                break
            time.sleep(1.0)

    _summary(console, clients, settings, rows)
    return 0 if len([r for r in rows.values() if r.get(Col.STATE) in TERMINAL]) == len(SAMPLES) else 1


def _ledger_rows(ledger: Ledger, etags: dict[str, str]) -> dict[str, dict]:
    """The ledger row of each sample's uploaded version (rows of older uploads are ignored); the table
    appears with the first row, until then there is nothing to show."""
    found: dict[str, dict] = {}
    for row in ledger.query("PartitionKey eq @job", {"job": ledger.job_id}):
        name = row.entity.get(Col.INPUT_NAME)
        if name in etags and row.entity.get(Col.INPUT_ETAG) in (etags[name], etags[name].strip('"')):
            found[name] = row.entity
    return found


def _summary(console: Console, clients, settings: Settings, rows: dict[str, dict]) -> None:
    out = clients.blob_service.get_container_client(settings.output_container)
    console.print()
    console.print(f"MP3s in container '{settings.output_container}' "
                  f"({clients.blob_service.url.rstrip('/')}/{settings.output_container}):")
    for blob in out.list_blobs():
        console.print(f"  {blob.name}  ({blob.size:,} bytes)")
    console.print()
    console.print("ledger rows: ./dev status files     failures: ./dev status failures     pool: ./dev status pool")
    console.print("upload your own:  az storage blob upload --connection-string 'UseDevelopmentStorage=true' "
                  f"-c {settings.input_container} -f my.mp4 -n my.mp4")
    console.print("the stack keeps running for your uploads; stop it with [bold]./dev stop[/]")
