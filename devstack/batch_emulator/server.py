"""Run the emulator: `EmulatorServer(config).start()` serves it with uvicorn on a background thread (tests,
scripts); `serve_forever(config)` runs it in the foreground (`python -m devstack.batch_emulator`).

A stopped server can be started again on the same data_dir (and the same port): state is restored and tasks that
were running are requeued - the restart path the tests exercise.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
from types import FrameType

import uvicorn

from .app import build_app
from .backend import Backend
from .config import EmulatorConfig
from .faults import FaultInjector
from .scheduler import Scheduler
from .stats import RequestStats

log = logging.getLogger("devstack.batch_emulator")


class _Uvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, url: str) -> None:
        super().__init__(config)
        self._url = url

    async def startup(self, sockets=None) -> None:  # type: ignore[override]
        await super().startup(sockets)
        if self.started:
            log.info("Batch emulator ready on %s", self._url)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn re-raises a captured SIGTERM after shutdown, which would kill the process before the
        # scheduler stops and state is flushed; shut down gracefully and exit 0 instead.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: uvicorn (h11) writes a response's head and body separately, and with
    # Nagle on, the body waited for the client's delayed ACK - about 40 ms on every response with a body.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"Batch emulator cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class EmulatorServer:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.stats = RequestStats()
        self.faults = FaultInjector(config.faults)
        self.backend: Backend | None = None
        self.scheduler: Scheduler | None = None
        self._server: _Uvicorn | None = None
        self._thread: threading.Thread | None = None
        self._port = config.port

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.config.public_host}:{self._port}"

    def _prepare(self) -> tuple[socket.socket, _Uvicorn]:
        sock = _bind(self.config.host, self._port)
        self._port = sock.getsockname()[1]
        cfg = self.config.replace(port=self._port)
        self.backend = Backend(cfg, account_url=self.url)
        self.scheduler = Scheduler(self.backend)
        self.scheduler.start()
        app = build_app(self.backend, self.scheduler, self.stats, self.faults)
        uv_config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                   timeout_keep_alive=30, server_header=False, date_header=True)
        return sock, _Uvicorn(uv_config, self.url)

    def start(self, timeout: float = 30.0) -> "EmulatorServer":
        """Start serving on a background thread; returns once the socket accepts requests."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        sock, server = self._prepare()
        self._server = server

        def run() -> None:
            asyncio.run(server.serve(sockets=[sock]))

        self._thread = threading.Thread(target=run, name="batch-emulator-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Batch emulator did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.backend is not None:
            self.backend.close()
        self._server = self._thread = None
        self.scheduler = self.backend = None

    def __enter__(self) -> "EmulatorServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_forever(config: EmulatorConfig) -> None:
    """Foreground mode: uvicorn handles SIGINT/SIGTERM; state is flushed and processes stopped on the way out."""
    emulator = EmulatorServer(config)
    sock, server = emulator._prepare()
    try:
        server.run(sockets=[sock])
    finally:
        assert emulator.scheduler is not None and emulator.backend is not None
        emulator.scheduler.stop()
        emulator.backend.close()
        log.info("Batch emulator stopped")
