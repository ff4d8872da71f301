"""An API process of its own for a test that must break something under it (its database connection), so the
session's shared API (conftest `api_url`) is never disturbed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from .pgproxy import free_port

ROOT = Path(__file__).resolve().parents[2]


def _spawn(port: int, environ: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@asynccontextmanager
async def api_process(database_url: str, kafka: str, **env: str) -> AsyncIterator[tuple[str, Path]]:
    """(base URL, log file) of a running `scimsync api`; stopped with SIGTERM at the end. Async, so that a proxy
    in the test's event loop keeps serving while the API starts and stops."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (ROOT / ".pytest_cache").mkdir(exist_ok=True)
    log_path = ROOT / ".pytest_cache" / f"api-own-{port}.log"
    environ = {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "SCIMSYNC_PUBLIC_URL": url,
        "SCIMSYNC_LOG_LEVEL": "info",
        **env,
    }
    proc = _spawn(port, environ, log_path)
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=1) as client:
            while True:
                try:
                    if (await client.get(f"{url}/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"API did not start: {log_path.read_text()[-2000:]}")
                await asyncio.sleep(0.1)
        yield url, log_path
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 15)  # in a thread: the proxy may still serve the API's goodbye
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
