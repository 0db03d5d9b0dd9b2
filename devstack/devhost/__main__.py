"""`python -m devstack.devhost`: run a Functions app's blob and timer triggers until Ctrl-C."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from .errors import DevHostError
from .host import FALLBACK_AUTO, FALLBACK_OFF, FALLBACK_ON, DevHost
from .logs import configure_logging


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack.devhost",
                                     description="Run function_app.py's blob and timer triggers locally.")
    parser.add_argument("--app-dir", type=Path, default=Path("."), help="Functions app root (default: .)")
    parser.add_argument("--settings", type=Path, default=None,
                        help="local settings file (default: <app-dir>/local.settings.json, created from "
                             "local.settings.sample.json when missing)")
    parser.add_argument("--port", type=int, default=7071, help="HTTP port for the Event Grid webhook (default 7071; "
                                                               "0 picks a free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1); whatever the address, only requests "
                             "addressed to 127.0.0.1, localhost or [::1] are served")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="where the generated blobs_extension key is kept (default: <app-dir>/.devstack); "
                             "DEVHOST_BLOBS_EXTENSION_KEY, when set, is the key instead")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="container scan interval in seconds")
    parser.add_argument("--eventgrid-fallback-poll", choices=[FALLBACK_AUTO, FALLBACK_ON, FALLBACK_OFF],
                        default=os.environ.get("DEVHOST_EVENTGRID_FALLBACK_POLL", FALLBACK_AUTO),
                        help="also scan containers for source=EventGrid functions: auto (default) = only when "
                             "their storage is a local emulator, which emits no events")
    parser.add_argument("--shutdown-grace", type=float, default=10.0,
                        help="seconds running invocations get to finish on Ctrl-C before being abandoned")
    parser.add_argument("--download-blob-content", action="store_true",
                        help="give func.InputStream parameters the blob's bytes, as the Azure worker does "
                             "(default: metadata-only stream)")
    parser.add_argument("--log-format", choices=["kv", "json"], default="kv")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_format, args.log_level.upper())
    host = DevHost(args.app_dir, args.settings, port=args.port, poll_interval=args.poll_interval, bind=args.host,
                   eventgrid_fallback_poll=args.eventgrid_fallback_poll, shutdown_grace=args.shutdown_grace,
                   download_blob_content=args.download_blob_content, state_dir=args.state_dir)
    stop_requested = threading.Event()
    signals_seen = 0

    def on_signal(signum, frame) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            # Second Ctrl-C: don't wait for running invocations (their blobs fire again next start).
            os._exit(130)
        stop_requested.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        host.start()
    except DevHostError as exc:
        print(f"devhost: {exc}", file=sys.stderr)
        return 2
    if host.settings is not None and host.settings.created_from_sample:
        print(f"Created {host.settings.path} from local.settings.sample.json; edit it to change settings.")
    print("\n".join(host.describe()))
    print(f"Dev host running. Press Ctrl-C to stop (running invocations get {args.shutdown_grace:g}s to finish).",
          flush=True)
    while not stop_requested.wait(0.5):
        pass
    print("Stopping: no new invocations; waiting for running ones...", flush=True)
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
