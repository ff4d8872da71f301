"""Real scimsync API processes with a test's own settings (the session's `api_url` has the defaults)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ApiProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=timeout)


def start_api(database_url: str, kafka: str, extra_env: Mapping[str, str] | None = None) -> ApiProcess:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "SCIMSYNC_PUBLIC_URL": url,
        "SCIMSYNC_LOG_LEVEL": "warning",
        **(extra_env or {}),
    }
    (ROOT / ".pytest_cache").mkdir(exist_ok=True)
    log_path = ROOT / ".pytest_cache" / f"api-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    api = ApiProcess(proc, url, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return api
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"API exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("API did not start within 30 s")


@contextmanager
def running_api(database_url: str, kafka: str, extra_env: Mapping[str, str] | None = None) -> Iterator[ApiProcess]:
    api = start_api(database_url, kafka, extra_env)
    try:
        yield api
    finally:
        if api.proc.poll() is None:
            api.proc.kill()
            api.proc.wait(timeout=10)


async def http_get(url: str, headers: Mapping[str, str] | None = None, wait: float = 10) -> httpx.Response:
    async with httpx.AsyncClient(timeout=wait) as client:
        return await client.get(url, headers=headers)
