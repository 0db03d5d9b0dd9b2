"""A private local stack for compatibility runs: Azurite (in memory) and the Batch emulator (in memory, in this
process) on free ports, plus the dev Functions host on demand. Never the fixed ports of `./dev start`, so a
compatibility run does not disturb anyone's running stack or concurrent tests."""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from devstack import azurite
from devstack.batch_emulator.config import EmulatorConfig
from devstack.batch_emulator.server import EmulatorServer

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class CompatStack:
    work: Path
    node_start_delay: float = 0.5
    sample_lag: timedelta | None = None   # None: the emulator's default (the docs' ~1 minute)
    ports: azurite.AzuritePorts = field(default_factory=azurite.free_ports)
    _azurite: subprocess.Popen | None = None
    emulator: EmulatorServer | None = None

    def start(self) -> "CompatStack":
        self.work.mkdir(parents=True, exist_ok=True)
        self._azurite = azurite.start(self.ports, log_path=self.work / "azurite.log")
        try:
            # Clients create pools with the service's 5-minute minimum autoscale interval, so the emulator keeps
            # the service's rules; only node boot is shortened.
            config = EmulatorConfig(host="127.0.0.1", port=0, data_dir=None, node_start_delay=self.node_start_delay,
                                    storage_connection_string=self.connection_string, log_level="WARNING",
                                    sample_lag=self.sample_lag)
            self.emulator = EmulatorServer(config).start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        # Azurite runs in its own session: stop it even if stopping the emulator is interrupted (SIGTERM, Ctrl-C).
        try:
            if self.emulator is not None:
                emulator, self.emulator = self.emulator, None
                emulator.stop()
        finally:
            if self._azurite is not None:
                proc, self._azurite = self._azurite, None
                azurite.stop(proc)

    def __enter__(self) -> "CompatStack":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- endpoints ---------------------------------------------------------------------------------------
    @property
    def batch_url(self) -> str:
        assert self.emulator is not None, "stack not started"
        return self.emulator.url

    @property
    def batch_account(self) -> str:
        assert self.emulator is not None
        return self.emulator.config.account_name

    @property
    def batch_key(self) -> str:
        assert self.emulator is not None
        return self.emulator.config.account_key

    @property
    def connection_string(self) -> str:
        return self.ports.connection_string

    def client_env(self, prefix: str, clips: Path) -> dict[str, str]:
        """What every scenario script reads (COMPAT_*): endpoints, credentials, inputs, a unique id prefix."""
        return {
            "COMPAT_BATCH_URL": self.batch_url,
            "COMPAT_BATCH_ACCOUNT": self.batch_account,
            "COMPAT_BATCH_KEY": self.batch_key,
            "COMPAT_STORAGE_CONNECTION_STRING": self.connection_string,
            "COMPAT_BLOB_ENDPOINT": self.ports.blob_endpoint,
            "COMPAT_BLOB_HOST": f"http://127.0.0.1:{self.ports.blob}",
            "COMPAT_STORAGE_ACCOUNT": azurite.ACCOUNT_NAME,
            "COMPAT_STORAGE_KEY": azurite.ACCOUNT_KEY,
            "COMPAT_CLIPS": str(clips),
            "COMPAT_PREFIX": prefix,
        }

    def app_settings_file(self, path: Path, overrides: dict[str, str]) -> Path:
        """local.settings.json for the dev host: the sample settings pointed at this stack."""
        values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
        values.update({"AzureWebJobsStorage": self.connection_string, "MEDIA_STORAGE": self.connection_string,
                       "BATCH_ACCOUNT_URL": self.batch_url, "BATCH_ACCOUNT_NAME": self.batch_account,
                       "BATCH_ACCOUNT_KEY": self.batch_key})
        values.update(overrides)
        path.write_text(json.dumps({"IsEncrypted": False, "Values": values}, indent=1))
        return path
