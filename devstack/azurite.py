"""Start and stop the pinned Azurite (npm) on chosen ports and wait until it answers."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

NODE_DIR = Path(__file__).resolve().parent / "node"
AZURITE_BIN = NODE_DIR / "node_modules" / ".bin" / "azurite"

# Azurite's documented well-known development account; not a secret.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass(frozen=True)
class AzuritePorts:
    blob: int = 10000
    queue: int = 10001
    table: int = 10002

    @property
    def connection_string(self) -> str:
        base = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={base}:{self.blob}/{ACCOUNT_NAME};"
            f"QueueEndpoint={base}:{self.queue}/{ACCOUNT_NAME};"
            f"TableEndpoint={base}:{self.table}/{ACCOUNT_NAME};"
        )

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.blob}/{ACCOUNT_NAME}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports() -> AzuritePorts:
    return AzuritePorts(free_port(), free_port(), free_port())


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def ensure_installed() -> Path:
    """Install the pinned Azurite from the npm registry if it is missing."""
    if not AZURITE_BIN.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is required to install Azurite (Node.js 18+); install Node.js and retry")
        subprocess.run(
            [npm, "ci" if (NODE_DIR / "package-lock.json").exists() else "install", "--no-audit", "--no-fund"],
            cwd=NODE_DIR, check=True, stdout=subprocess.DEVNULL,
        )
    return AZURITE_BIN


def start(ports: AzuritePorts, location: Path | None = None, log_path: Path | None = None,
          timeout: float = 60.0) -> subprocess.Popen:
    """Start Azurite; in memory when `location` is None. Returns once all three ports answer."""
    binary = ensure_installed()
    args = [str(binary), "--silent", "--skipApiVersionCheck", "--loose", "--disableProductStyleUrl",
            "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1",
            "--blobPort", str(ports.blob), "--queuePort", str(ports.queue), "--tablePort", str(ports.table)]
    if location is None:
        args.append("--inMemoryPersistence")
    else:
        location.mkdir(parents=True, exist_ok=True)
        args += ["--location", str(location)]
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Azurite exited with code {proc.returncode} (ports {ports})")
        if all(port_open(p) for p in (ports.blob, ports.queue, ports.table)):
            return proc
        time.sleep(0.1)
    proc.kill()
    raise TimeoutError(f"Azurite did not open ports {ports} within {timeout:.0f}s")


def stop(proc: subprocess.Popen, timeout: float = 2.0) -> None:
    # Azurite often ignores SIGTERM once clients have connected; in-memory data has nothing to flush,
    # and on-disk persistence is journalled, so a short grace then SIGKILL loses nothing.
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
