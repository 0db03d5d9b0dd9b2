"""DevHost: load a Functions app and run its blob and timer triggers locally, like the real host."""
from __future__ import annotations

import os
import re
import socket
import sys
import threading
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit

import uvicorn
from azure.core.exceptions import ResourceNotFoundError

from .blobpath import BlobPathPattern
from .blobs import BlobDispatcher, BlobFunction
from .clients import StorageClients
from .clock import Clock, SystemClock
from .connections import HOST_STORAGE, ResolvedConnection, resolve_connection
from .discovery import (APP_MODULE, BLOB_ARG_STREAM, BLOB_TRIGGER, EVENT_GRID_SOURCE, POLLING_SOURCE,
                        DiscoveredFunction, SkippedFunction, discover)
from .errors import DevHostError
from .events import BlobCreated
from .hostconfig import HostOptions, load_host_options
from .logs import get_logger
from .poller import ContainerPoller
from .receipts import ReceiptStore
from .schedule import NcrontabSchedule, timer_zone
from .security import KEY_QUERY_PARAMETER, KEY_SETTING, WebhookKey, is_loopback_host, resolve_webhook_key
from .settings import EnvironmentOverlay, LocalSettings, load_local_settings, resolve_app_setting_expressions
from .timers import ScheduleStatusStore, TimerFunction, TimerListener
from .webhook import create_app

log = get_logger("host")

FALLBACK_AUTO, FALLBACK_ON, FALLBACK_OFF = "auto", "on", "off"
HOST_ID_SETTINGS = ("AzureFunctionsWebHost__hostid", "AzureFunctionsWebHost__hostId")
STATE_DIR_NAME = ".devstack"  # the dev stack's state dir when the app is the repo (./dev start)


def derive_host_id(env: Mapping[str, str], app_dir: Path) -> str:
    """Host id: explicit setting, else the site name (Azure), else machine name + app path hash (Core Tools)."""
    for setting in HOST_ID_SETTINGS:
        explicit = env.get(setting)
        if explicit:
            if not re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?!-)){0,30}[a-z0-9]|[a-z0-9]", explicit):
                raise DevHostError(f"{setting}={explicit!r}: a host id has 1-32 lowercase letters, digits and "
                                   f"single dashes, not at either end")
            return explicit
    base = env.get("WEBSITE_SITE_NAME") or f"{socket.gethostname()}-{zlib.crc32(str(app_dir).encode()):08x}"
    cleaned = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "", base.lower()))
    return cleaned[:32].strip("-") or "devhost"


class DevHost:
    def __init__(self, app_dir: Path, settings_path: Path | None = None, port: int | None = 7071,
                 poll_interval: float = 2.0, *, bind: str = "127.0.0.1", eventgrid_fallback_poll: str = FALLBACK_AUTO,
                 shutdown_grace: float = 10.0, clock: Clock | None = None, download_blob_content: bool = False,
                 state_dir: Path | None = None) -> None:
        if eventgrid_fallback_poll not in (FALLBACK_AUTO, FALLBACK_ON, FALLBACK_OFF):
            raise ValueError("eventgrid_fallback_poll must be 'auto', 'on' or 'off'")
        self.app_dir = Path(app_dir).resolve()
        self.settings_path = settings_path
        self.port = port
        self.poll_interval = poll_interval
        self.bind = bind
        self.eventgrid_fallback_poll = eventgrid_fallback_poll
        self.shutdown_grace = shutdown_grace
        self.download_blob_content = download_blob_content
        # Where the generated blobs_extension key is kept (unless DEVHOST_BLOBS_EXTENSION_KEY is set).
        self.state_dir = Path(state_dir).resolve() if state_dir is not None else self.app_dir / STATE_DIR_NAME
        self.webhook_key: WebhookKey | None = None  # set when the HTTP port opens
        self.clock: Clock = clock or SystemClock()
        self.host_id = ""
        self.settings: LocalSettings | None = None
        self.options = HostOptions()
        self.blob_functions: list[BlobFunction] = []
        self.timer_functions: list[TimerFunction] = []
        self.skipped: list[SkippedFunction] = []
        self._overlay = EnvironmentOverlay()
        self._clients = StorageClients()
        self._dispatcher: BlobDispatcher | None = None
        self._poller: ContainerPoller | None = None
        self._timers: list[TimerListener] = []
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self._bound_port: int | None = None
        self._added_sys_path = False
        self._previous_app_module = sys.modules.get(APP_MODULE)
        self._started = False

    # -- public API ------------------------------------------------------------------------
    @property
    def url(self) -> str | None:
        if self._bound_port is None:
            return None
        # The host serves only loopback Host names (security.py): a wildcard bind is reached through loopback.
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(self.bind, self.bind)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self._bound_port}"

    def webhook_url(self, function_name: str, *, with_key: bool = True) -> str:
        """The URL an Event Grid subscription would post to, `code=<blobs_extension key>` included."""
        if self.url is None or self.webhook_key is None:
            raise DevHostError("the dev host was started without an HTTP port")
        code = quote(self.webhook_key.value, safe="") if with_key else "<blobs_extension key>"
        return f"{self.url}/runtime/webhooks/blobs?functionName=Host.Functions.{function_name}&" \
               f"{KEY_QUERY_PARAMETER}={code}"

    def start(self) -> DevHost:
        if self._started:
            raise RuntimeError("DevHost already started")
        try:
            self._start()
        except BaseException:
            self._teardown(grace=0.0)
            raise
        self._started = True
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop scheduling; let running invocations finish for `grace` s (default shutdown_grace), then abandon."""
        if not self._started:
            return
        self._started = False
        self._teardown(self.shutdown_grace if grace is None else grace)
        log.info("dev host stopped", extra={"event": "host.stopped"})

    def poll_now(self) -> None:
        if self._poller is not None:
            self._poller.poll_now()

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Block until a container scan that began after this call found nothing new and no blob work is left."""
        deadline = time.monotonic() + timeout
        dispatcher = self._dispatcher
        if dispatcher is None:
            return
        while True:
            dispatched_before = dispatcher.stats.dispatched
            if self._poller is not None:
                target = self._poller.scans_started() + 1
                self._poller.poll_now()
                if not self._poller.wait_for_scan_completed(target, max(deadline - time.monotonic(), 0)):
                    raise TimeoutError("dev host: container scan did not finish in time")
            if not dispatcher.wait_idle(max(deadline - time.monotonic(), 0)):
                raise TimeoutError(f"dev host: {dispatcher.busy} blob invocation(s) still pending")
            if dispatcher.stats.dispatched == dispatched_before:
                return

    def describe(self) -> list[str]:
        lines = [f"Functions in {self.app_dir} (host id {self.host_id}):"]
        for fn in self.blob_functions:
            feed = "container scan every %.1fs" % self.poll_interval if fn.polled else "webhook only"
            if fn.source == EVENT_GRID_SOURCE:
                feed = f"Event Grid webhook{' + ' + feed if fn.polled else ''}"
            lines.append(f"  {fn.name}: blobTrigger path={fn.pattern.path} source={fn.source} "
                         f"connection={fn.connection.setting} ({feed})")
        for timer in self.timer_functions:
            lines.append(f"  {timer.name}: timerTrigger schedule='{timer.schedule.expression}' "
                         f"({timer.schedule.zone}) use_monitor={timer.use_monitor} "
                         f"run_on_startup={timer.run_on_startup}")
        for skipped in self.skipped:
            lines.append(f"  {skipped.name}: skipped ({skipped.reason})")
        webhooks = [fn for fn in self.blob_functions if fn.source == EVENT_GRID_SOURCE]
        if webhooks and self.url and self.webhook_key is not None:
            # The key itself stays out of the output (it often ends up in a log file).
            for fn in webhooks:
                lines.append(f"Event Grid webhook for {fn.name}: POST {self.webhook_url(fn.name, with_key=False)}")
            where = "setting" if self.webhook_key.source == KEY_SETTING else "file"
            lines.append(f"blobs_extension key: {where} {self.webhook_key.source}; send header aeg-event-type "
                         f"(Notification or SubscriptionValidation)")
        return lines

    def __enter__(self) -> DevHost:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- startup ---------------------------------------------------------------------------
    def _start(self) -> None:
        # Fresh state, so a stopped DevHost can be started again.
        self.blob_functions, self.timer_functions, self.skipped = [], [], []
        self._overlay, self._clients = EnvironmentOverlay(), StorageClients()
        self.settings = load_local_settings(self.app_dir, self.settings_path)
        self._overlay.apply(self.settings.values)
        self.options = load_host_options(self.app_dir)
        env = os.environ
        self._added_sys_path = str(self.app_dir) not in sys.path
        self._previous_app_module = sys.modules.get(APP_MODULE)
        functions, self.skipped = discover(self.app_dir)
        for skipped in self.skipped:
            log.warning("skipping function %s: %s", skipped.name, skipped.reason,
                        extra={"event": "function.skipped", "function": skipped.name})
        self.host_id = derive_host_id(env, self.app_dir)
        zone = timer_zone(env.get("WEBSITE_TIME_ZONE"))
        for fn in functions:
            if fn.trigger_type == BLOB_TRIGGER:
                self.blob_functions.append(self._blob_function(fn, env))
            else:
                self.timer_functions.append(self._timer_function(fn, env, zone))
        if not self.blob_functions and not self.timer_functions:
            log.warning("no blob or timer functions to run", extra={"event": "host.empty"})
            return
        host_storage = resolve_connection(HOST_STORAGE, env, "host storage")
        hosts_container = self._clients.hosts_container(host_storage.connection_string)
        if self.blob_functions:
            self._start_blob_triggers(ReceiptStore(hosts_container, self.host_id))
        if self.port is not None:
            self._start_http()
        status_store = ScheduleStatusStore(hosts_container, self.host_id)
        for timer in self.timer_functions:
            listener = TimerListener(timer, status_store, self.clock)
            self._timers.append(listener)
            listener.start()
        for fn in self.blob_functions:
            log.info("serving %s: blobTrigger %s (source=%s, polled=%s)", fn.name, fn.pattern.path, fn.source,
                     fn.polled, extra={"event": "host.function", "function": fn.name, "trigger": "blobTrigger",
                                       "path": fn.pattern.path, "source": fn.source, "polled": fn.polled,
                                       "connection": fn.connection.setting})
        for timer in self.timer_functions:
            log.info("serving %s: timerTrigger '%s'", timer.name, timer.schedule.expression,
                     extra={"event": "host.function", "function": timer.name, "trigger": "timerTrigger",
                            "schedule": timer.schedule.expression, "use_monitor": timer.use_monitor,
                            "run_on_startup": timer.run_on_startup})
        log.info("dev host started (host id %s, %s)", self.host_id, self.url or "no HTTP port",
                 extra={"event": "host.started", "host_id": self.host_id, "url": self.url})

    def _blob_function(self, fn: DiscoveredFunction, env: Mapping[str, str]) -> BlobFunction:
        where = f"function {fn.name!r}"
        path = resolve_app_setting_expressions(fn.trigger.path, env, f"{where} path")
        connection = resolve_connection(
            resolve_app_setting_expressions(fn.trigger.connection, env, f"{where} connection")
            if fn.trigger.connection else None, env, where)
        source = fn.trigger.source or POLLING_SOURCE
        if source not in (POLLING_SOURCE, EVENT_GRID_SOURCE):
            raise DevHostError(f"{where}: unknown blob trigger source {source!r}")
        polled = source == POLLING_SOURCE or self._fallback_poll(connection)
        if fn.trigger_arg_kind == BLOB_ARG_STREAM and not self.download_blob_content:
            log.warning("%s takes func.InputStream: on Azure the worker reads the whole blob into memory; the dev "
                        "host passes a metadata-only stream whose read() raises", fn.name,
                        extra={"event": "function.metadata_only_stream", "function": fn.name})
        elif fn.trigger_arg_kind in ("bytes", "str"):
            log.warning("%s takes the blob as %s: the whole blob is downloaded for every invocation", fn.name,
                        fn.trigger_arg_kind, extra={"event": "function.downloads_blob", "function": fn.name})
        return BlobFunction(function=fn, pattern=BlobPathPattern(path), connection=connection, source=source,
                            polled=polled)

    def _fallback_poll(self, connection: ResolvedConnection) -> bool:
        # Azurite emits no Event Grid events; without this an Event Grid function never fires locally.
        if self.eventgrid_fallback_poll == FALLBACK_AUTO:
            return connection.is_local_emulator
        return self.eventgrid_fallback_poll == FALLBACK_ON

    def _timer_function(self, fn: DiscoveredFunction, env: Mapping[str, str], zone) -> TimerFunction:
        where = f"function {fn.name!r} schedule"
        schedule = NcrontabSchedule(resolve_app_setting_expressions(fn.trigger.schedule, env, where), zone)
        use_monitor = fn.trigger.use_monitor
        if use_monitor is None:
            use_monitor = schedule.default_use_monitor(self.clock.now())
        return TimerFunction(function=fn, schedule=schedule, run_on_startup=bool(fn.trigger.run_on_startup),
                             use_monitor=bool(use_monitor))

    def _start_blob_triggers(self, receipts: ReceiptStore) -> None:
        dispatcher = self._dispatcher = BlobDispatcher(receipts, self._clients, self.options,
                                                       self.download_blob_content)
        dispatcher.start()
        # Receipts are the durable record: finished versions are skipped without a storage call, and
        # versions left incomplete by an earlier run (stopped mid-invocation) are resumed.
        for fn in self.blob_functions:
            done, resumed = [], 0
            for key, complete in receipts.scan(fn.function_id):
                if complete:
                    done.append(key)
                elif key.container == fn.pattern.container and fn.pattern.match(key.blob_name) is not None:
                    resumed += dispatcher.offer(fn, key.container, key.blob_name, key.etag, "restart")
            dispatcher.remember_completed(done)
            log.info("%s: %d completed receipt(s), %d incomplete resumed", fn.name, len(done), resumed,
                     extra={"event": "receipts.loaded", "function": fn.name})
        polled = [fn for fn in self.blob_functions if fn.polled]
        if polled:
            self._poller = ContainerPoller(polled, self._clients, dispatcher, self.poll_interval)
            self._poller.start()

    def _on_blob_created(self, fn: BlobFunction, event: BlobCreated) -> bool:
        if event.container != fn.pattern.container or fn.pattern.match(event.blob_name) is None:
            log.info("BlobCreated for %s/%s does not match %s path %s; ignored", event.container, event.blob_name,
                     fn.name, fn.pattern.path, extra={"event": "eventgrid.not_matching", "function": fn.name})
            return False
        assert self._dispatcher is not None
        etag = event.etag
        if etag is None:
            # Event Grid always sends data.eTag; hand-written events (test.http) may not: use the current version.
            service = self._clients.blob_service(fn.connection.connection_string)
            try:
                etag = service.get_blob_client(event.container, event.blob_name).get_blob_properties().etag
            except ResourceNotFoundError:
                log.info("BlobCreated for %s/%s: the blob does not exist; ignored", event.container, event.blob_name,
                         extra={"event": "eventgrid.blob_missing", "function": fn.name})
                return False
        return self._dispatcher.offer(fn, event.container, event.blob_name, etag, EVENT_GRID_SOURCE)

    def _start_http(self) -> None:
        event_grid = {fn.name.lower(): fn for fn in self.blob_functions if fn.source == EVENT_GRID_SOURCE}
        names = {fn.name.lower(): fn.name for fn in [*self.blob_functions, *self.timer_functions]}
        self.webhook_key = resolve_webhook_key(os.environ, self.state_dir)
        app = create_app(event_grid, names, self._on_blob_created, self.host_id, self.webhook_key)
        sock = socket.socket(socket.AF_INET6 if ":" in self.bind else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.bind, self.port or 0))
        except OSError as exc:
            sock.close()
            raise DevHostError(f"cannot listen on {self.bind}:{self.port} ({exc.strerror}); pick another --port") \
                from exc
        sock.listen(128)
        self._bound_port = sock.getsockname()[1]
        if not is_loopback_host(urlsplit(self.url or "").netloc):
            log.warning("listening on %s, but only requests addressed to 127.0.0.1, localhost or [::1] are served "
                        "(a tunnel must rewrite the Host header to localhost)", self.bind,
                        extra={"event": "host.non_loopback_bind", "bind": self.bind})
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        server = self._server = uvicorn.Server(config)
        thread = self._server_thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                                        name="devhost-http", daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise DevHostError(f"HTTP server on {self.bind}:{self._bound_port} did not start")
            time.sleep(0.01)

    # -- shutdown --------------------------------------------------------------------------
    def _teardown(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        for listener in self._timers:
            listener.request_stop()
        if self._poller is not None:
            self._poller.stop()
        if self._server is not None:
            self._server.should_exit = True  # no new deliveries while we drain
        if self._dispatcher is not None:
            self._dispatcher.stop(max(deadline - time.monotonic(), 0.0))
        for listener in self._timers:
            listener.stop(max(deadline - time.monotonic(), 0.0))
        if self._server_thread is not None:
            self._server_thread.join(timeout=5)
        self._clients.close()
        self._overlay.restore()
        if self._added_sys_path and str(self.app_dir) in sys.path:
            sys.path.remove(str(self.app_dir))
        # Give `import function_app` back to whoever had it (tests import the real app in the same process).
        if self._previous_app_module is not None:
            sys.modules[APP_MODULE] = self._previous_app_module
        else:
            sys.modules.pop(APP_MODULE, None)
        self._poller = self._dispatcher = None
        self._server = self._server_thread = None
        self._bound_port = None
        self.webhook_key = None
        self._timers = []
