"""Emulator settings: one frozen dataclass built from CLI flags and `BATCH_EMULATOR_*` environment variables.

Every setting has a documented default; invalid values raise `ConfigError` naming the setting, so a typo in an
environment variable fails at start-up instead of producing a subtly different emulator.

The account key never travels on the command line (where `ps` shows it to every user of the machine): it comes
from `BATCH_EMULATOR_ACCOUNT_KEY` or from a file only its owner can read (`--account-key-file`, 0600); the
`--account-key` flag is refused with a message saying so.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import math
import os
import random
import re
import stat
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping, Sequence

ENV_PREFIX = "BATCH_EMULATOR_"
REPO_ROOT = Path(__file__).resolve().parents[2]

# The values committed in local.settings.sample.json (BATCH_ACCOUNT_NAME / BATCH_ACCOUNT_KEY): a local-only key.
DEFAULT_ACCOUNT_NAME = "devbatch"
DEFAULT_ACCOUNT_KEY = "lF/+Qykr+DUeV17Z9j4vx0y2FbIpxzpJE+DITWrHvnvVGaPX0himNWoyc4FcE/iVOLsgxab97MK3E0FZ7UY9Gw=="

_ACCOUNT_NAME_RE = re.compile(r"^[a-z0-9]{3,24}$")


class ConfigError(ValueError):
    """A setting has an invalid value; the message names the setting (flag and environment variable)."""

    def __init__(self, setting: str, message: str) -> None:
        env = ENV_PREFIX + setting.upper()
        flag = "--" + setting.replace("_", "-")
        super().__init__(f"invalid emulator setting {setting} ({flag} / {env}): {message}")
        self.setting = setting


@dataclass(frozen=True)
class FaultSettings:
    """Throttling injected in front of Batch operations (test hook; off by default)."""

    rate: float = 0.0                 # probability in [0, 1] that a Batch request is answered with `status`
    status: int = 503                 # 429 (TooManyRequests) or 503 (ServerBusy)
    retry_after: int | None = 1       # seconds for the Retry-After header; None sends no header
    operations: tuple[str, ...] = ()  # operation names (e.g. "Task_Add"); empty = every Batch operation
    count: int | None = None          # when set: fail exactly the next `count` matching requests, then stop


TASK_EXECUTIONS = ("run", "simulate")
SIMULATED_OUTPUTS = ("tiny", "none")


@dataclass(frozen=True)
class SimulatedDuration:
    """How long a simulated task runs: `fixed:SECONDS`, or `lognormal:MEDIAN:SIGMA` (seconds; sigma of the
    underlying normal, so the p95 is about MEDIAN * e^(1.645 * SIGMA)). A bare number means fixed."""

    kind: str = "lognormal"
    median: float = 1.0
    sigma: float = 0.5

    def draw(self, rng: random.Random) -> float:
        if self.kind == "fixed" or self.sigma == 0:
            return self.median
        return self.median * math.exp(rng.gauss(0.0, self.sigma))

    def text(self) -> str:
        return f"fixed:{self.median:g}" if self.kind == "fixed" else f"lognormal:{self.median:g}:{self.sigma:g}"

    @classmethod
    def parse(cls, setting: str, raw: str) -> "SimulatedDuration":
        parts = [p.strip() for p in raw.strip().split(":")]
        try:
            if len(parts) == 1:
                return cls("fixed", float(parts[0]), 0.0)
            if parts[0].lower() == "fixed" and len(parts) == 2:
                return cls("fixed", float(parts[1]), 0.0)
            if parts[0].lower() == "lognormal" and len(parts) == 3:
                return cls("lognormal", float(parts[1]), float(parts[2]))
        except ValueError:
            pass
        raise ConfigError(setting, f"{raw!r} is not fixed:SECONDS or lognormal:MEDIAN_SECONDS:SIGMA")


@dataclass(frozen=True)
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 10100                          # 0 picks a free port (tests)
    account_name: str = DEFAULT_ACCOUNT_NAME
    account_key: str = DEFAULT_ACCOUNT_KEY
    data_dir: Path | None = REPO_ROOT / ".devstack" / "batch"  # None = in-memory store (nothing survives a restart)
    node_start_delay: float = 3.0              # seconds a node spends creating+starting before it can run tasks
    autoscale_min_interval: timedelta = timedelta(minutes=5)  # the service's minimum autoScaleEvaluationInterval
    sample_period: timedelta = timedelta(seconds=30)          # metric sampling period the formulas see
    # How late a metric sample becomes visible to formulas. The docs: "It takes approximately one minute for
    # samples to propagate". None = two sample periods (60 s at the service's 30 s; proportionally shorter
    # when tests shorten the period); 0 = at once.
    sample_lag: timedelta | None = None
    resource_poll: float = 0.5                 # seconds between reads of task processes for resource metrics
    enable_autoscale_min_gap: timedelta = timedelta(seconds=30)  # service rule between enableautoscale calls
    allow_bearer: bool = False                 # accept `Authorization: Bearer` (identity-flow tests) without checks
    clock_skew: timedelta = timedelta(minutes=15)  # ocp-date window (emulator choice; Storage's rule)
    faults: FaultSettings = field(default_factory=FaultSettings)
    storage_connection_string: str | None = None  # credential used for identityReference / autoStorage blobs
    max_nodes_per_pool: int = 16               # allocation cap, reported as a resize error like a core quota
    max_running_tasks: int = max(2, os.cpu_count() or 2)  # host-wide concurrent task processes
    ffmpeg_on_path: bool = True                # put the pinned ffmpeg on every node's PATH
    scheduler_tick: float = 0.2                # seconds between scheduler passes (also woken on every change)
    log_level: str = "INFO"
    # Scale mode (README "Scale mode"): "simulate" runs no process, downloads nothing and makes no task
    # directory; a task holds its node slot for a drawn duration, then completes (outputs: tiny blobs or none).
    task_execution: str = "run"
    simulated_duration: SimulatedDuration = field(default_factory=SimulatedDuration)
    simulated_outputs: str = "tiny"
    simulated_failure_rate: float = 0.0       # share of simulated tries that exit 1 (retried like a real exit)
    simulated_seed: int | None = None         # fixed draws for repeatable runs

    @property
    def simulates(self) -> bool:
        return self.task_execution == "simulate"

    def __post_init__(self) -> None:
        validate(self)

    @property
    def public_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    def replace(self, **changes: Any) -> "EmulatorConfig":
        return dataclasses.replace(self, **changes)


def validate(cfg: EmulatorConfig) -> None:
    if not (0 <= cfg.port <= 65535):
        raise ConfigError("port", f"{cfg.port} is not a TCP port")
    if not _ACCOUNT_NAME_RE.match(cfg.account_name):
        raise ConfigError("account_name", "must be 3-24 lower-case letters or digits (Batch account naming)")
    try:
        if not base64.b64decode(cfg.account_key, validate=True):
            raise ConfigError("account_key", "decodes to zero bytes")
    except (binascii.Error, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError("account_key", "must be base64 (the SDK base64-decodes the key to sign)") from None
    if cfg.node_start_delay < 0:
        raise ConfigError("node_start_delay", "must be >= 0 seconds")
    if cfg.autoscale_min_interval <= timedelta(0):
        raise ConfigError("autoscale_min_interval", "must be positive")
    if cfg.sample_period <= timedelta(0):
        raise ConfigError("sample_period", "must be positive")
    if cfg.sample_lag is not None and cfg.sample_lag < timedelta(0):
        raise ConfigError("sample_lag", "must not be negative")
    if cfg.resource_poll <= 0:
        raise ConfigError("resource_poll", "must be positive")
    if cfg.enable_autoscale_min_gap < timedelta(0):
        raise ConfigError("enable_autoscale_min_gap", "must be >= 0")
    f = cfg.faults
    if not (0.0 <= f.rate <= 1.0):
        raise ConfigError("fault_rate", f"{f.rate} is not a probability in [0, 1]")
    if f.status not in (429, 500, 503):
        raise ConfigError("fault_status", "must be 429, 500 or 503")
    if f.retry_after is not None and f.retry_after < 0:
        raise ConfigError("fault_retry_after", "must be >= 0 seconds (or empty for no header)")
    if f.count is not None and f.count < 0:
        raise ConfigError("fault_count", "must be >= 0")
    if cfg.max_nodes_per_pool < 1:
        raise ConfigError("max_nodes_per_pool", "must be >= 1")
    if cfg.max_running_tasks < 1:
        raise ConfigError("max_running_tasks", "must be >= 1")
    if cfg.scheduler_tick <= 0:
        raise ConfigError("scheduler_tick", "must be positive")
    if cfg.clock_skew <= timedelta(0):
        raise ConfigError("clock_skew", "must be positive")
    if cfg.task_execution not in TASK_EXECUTIONS:
        raise ConfigError("task_execution", f"{cfg.task_execution!r} is not one of {', '.join(TASK_EXECUTIONS)}")
    d = cfg.simulated_duration
    if d.kind not in ("fixed", "lognormal") or not (0 <= d.median < 86400) or not (0 <= d.sigma <= 5):
        raise ConfigError("simulated_duration", "needs 0 <= seconds < 86400 and 0 <= sigma <= 5")
    if cfg.simulated_outputs not in SIMULATED_OUTPUTS:
        raise ConfigError("simulated_outputs", f"{cfg.simulated_outputs!r} is not one of "
                                               f"{', '.join(SIMULATED_OUTPUTS)}")
    if not (0.0 <= cfg.simulated_failure_rate <= 1.0):
        raise ConfigError("simulated_failure_rate", f"{cfg.simulated_failure_rate} is not a share in [0, 1]")


# --- parsing -------------------------------------------------------------------------------------------------

def _parse_bool(setting: str, raw: str) -> bool:
    v = raw.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(setting, f"{raw!r} is not a boolean (true/false)")


def _parse_seconds(setting: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(setting, f"{raw!r} is not a number of seconds") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(setting, f"{raw!r} is not a finite number of seconds")
    return value


def read_account_key_file(raw: str) -> str:
    """The key in a file only its owner may read or write (like an ssh private key): 0600 or stricter."""
    path = Path(raw).expanduser()
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError("account_key_file", f"{path} is not a regular file")
        if mode & 0o077:
            raise ConfigError("account_key_file", f"{path} is readable or writable by others "
                                                  f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it")
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("account_key_file", f"cannot read {path}: {exc}") from None
    if not key:
        raise ConfigError("account_key_file", f"{path} is empty")
    return key


def _parse_int(setting: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(setting, f"{raw!r} is not an integer") from None


# setting name -> (converter from string, how to place it)
_SCALARS: dict[str, Any] = {
    "host": str,
    "port": _parse_int,
    "account_name": str,
    "account_key": str,
    "node_start_delay": _parse_seconds,
    "allow_bearer": _parse_bool,
    "storage_connection_string": str,
    "max_nodes_per_pool": _parse_int,
    "max_running_tasks": _parse_int,
    "ffmpeg_on_path": _parse_bool,
    "scheduler_tick": _parse_seconds,
    "resource_poll": _parse_seconds,
    "log_level": str,
    "task_execution": lambda name, raw: raw.strip().lower(),
    "simulated_duration": SimulatedDuration.parse,
    "simulated_outputs": lambda name, raw: raw.strip().lower(),
    "simulated_failure_rate": _parse_seconds,
    "simulated_seed": _parse_int,
}
_DURATIONS = ("autoscale_min_interval", "sample_period", "sample_lag", "enable_autoscale_min_gap", "clock_skew")
_FAULTS = {"fault_rate": ("rate", _parse_seconds), "fault_status": ("status", _parse_int),
           "fault_retry_after": ("retry_after", _parse_int), "fault_count": ("count", _parse_int),
           "fault_operations": ("operations", None)}
ALL_SETTINGS = (*_SCALARS, *_DURATIONS, "data_dir", "in_memory", "account_key_file", *_FAULTS)


def from_mapping(values: Mapping[str, str | None], base: EmulatorConfig | None = None) -> EmulatorConfig:
    """Build a config from string values keyed by setting name (unknown keys are an error)."""
    base = base or EmulatorConfig()
    changes: dict[str, Any] = {}
    fault_changes: dict[str, Any] = {}
    for name, raw in values.items():
        if raw is None:
            continue
        if name in _SCALARS:
            changes[name] = _SCALARS[name](name, raw) if _SCALARS[name] is not str else raw
        elif name in _DURATIONS:
            changes[name] = timedelta(seconds=_parse_seconds(name, raw))
        elif name == "data_dir":
            changes["data_dir"] = Path(raw).expanduser() if raw else None
        elif name == "account_key_file":
            if values.get("account_key") is not None:
                raise ConfigError("account_key_file", "give the account key or a key file, not both")
            changes["account_key"] = read_account_key_file(raw)
        elif name == "in_memory":
            if _parse_bool(name, raw):
                changes["data_dir"] = None
        elif name in _FAULTS:
            attr, conv = _FAULTS[name]
            if attr == "operations":
                fault_changes[attr] = tuple(x.strip() for x in raw.split(",") if x.strip())
            elif attr in ("retry_after", "count") and raw.strip() == "":
                fault_changes[attr] = None
            else:
                fault_changes[attr] = conv(name, raw)
        else:
            raise ConfigError(name, "unknown setting")
    if fault_changes:
        changes["faults"] = dataclasses.replace(base.faults, **fault_changes)
    return dataclasses.replace(base, **changes)


def from_env(environ: Mapping[str, str] | None = None, base: EmulatorConfig | None = None) -> EmulatorConfig:
    environ = os.environ if environ is None else environ
    values = {}
    for key, raw in environ.items():
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX):].lower()
            if name in ALL_SETTINGS:
                values[name] = raw
    return from_mapping(values, base)


def argument_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m devstack.batch_emulator",
                                description="Local Azure Batch data-plane emulator (never deployed).")
    add = p.add_argument
    add("--host", help="listen address (default 127.0.0.1)")
    add("--port", help="listen port (default 10100; 0 = any free port)")
    add("--account-name", help="Batch account name (default devbatch)")
    add("--account-key", help=argparse.SUPPRESS)  # refused: argv is visible to every user (ps)
    add("--account-key-file", help="file holding the base64 account key, mode 0600 (or set "
                                   "BATCH_EMULATOR_ACCOUNT_KEY; default: local.settings.sample.json's key)")
    add("--data-dir", help="directory for the state database and node work dirs")
    add("--in-memory", action="store_const", const="true", help="keep state in memory only")
    add("--node-start-delay", help="seconds before a new node can run tasks (default 3)")
    add("--autoscale-min-interval", help="minimum autoscale evaluation interval, seconds (default 300)")
    add("--sample-period", help="autoscale metric sample period, seconds (default 30)")
    add("--sample-lag", help="seconds before a metric sample is visible to formulas (default 2 sample periods)")
    add("--resource-poll", help="seconds between reads of task processes for resource metrics (default 0.5)")
    add("--enable-autoscale-min-gap", help="seconds between enableautoscale calls per pool (default 30)")
    add("--allow-bearer", action="store_const", const="true", help="accept bearer tokens without validation")
    add("--clock-skew", help="accepted ocp-date skew in seconds (default 900)")
    add("--storage-connection-string", help="storage credential for identity references")
    add("--max-nodes-per-pool", help="allocation cap per pool (default 16)")
    add("--max-running-tasks", help="host-wide concurrent task processes (default: CPU count, min 2)")
    add("--ffmpeg-on-path", help="true/false: pinned ffmpeg on node PATH (default true)")
    add("--scheduler-tick", help="seconds between scheduler passes (default 0.2)")
    add("--fault-rate", help="probability of injected throttling (default 0)")
    add("--fault-status", help="429 or 503 (default 503)")
    add("--fault-retry-after", help="Retry-After seconds ('' = no header; default 1)")
    add("--fault-count", help="fail exactly the next N matching requests")
    add("--fault-operations", help="comma-separated operation names to throttle (default all)")
    add("--log-level", help="DEBUG, INFO, WARNING (default INFO)")
    add("--task-execution", help="run (processes, default) or simulate (scale mode: no process per task)")
    add("--simulated-duration", help="scale mode: fixed:SECONDS or lognormal:MEDIAN:SIGMA (default lognormal:1:0.5)")
    add("--simulated-outputs", help="scale mode: tiny (a few bytes per output file, default) or none")
    add("--simulated-failure-rate", help="scale mode: share of tries that exit 1 (default 0)")
    add("--simulated-seed", help="scale mode: seed for the draws (default: random)")
    return p


def from_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> EmulatorConfig:
    """CLI flags override environment variables, which override defaults."""
    args = argument_parser().parse_args(argv)
    if args.account_key is not None:
        raise ConfigError("account_key", "not accepted on the command line, where `ps` shows it to every user; "
                                         f"set {ENV_PREFIX}ACCOUNT_KEY or use --account-key-file (mode 0600)")
    base = from_env(environ)
    return from_mapping({k: v for k, v in vars(args).items() if v is not None}, base)
