"""The deployed processes (API, relay, consumers) as real subprocesses, with their JSON logs kept per test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """One process; `start()` again after `kill()` runs it anew with the same command (its log appends)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Process:
        with open(self.log_path, "ab") as log:
            log.write(f'{{"event": "test.started", "run": {self.starts}}}\n'.encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, *self.argv], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.starts += 1
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """kill -9: no clean-up of any kind, as a crash or an OOM kill."""
        assert self.proc is not None and self.alive, f"{self.name} is not running"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM (a graceful stop), then SIGKILL if it doesn't exit in time. → exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def lines(self, since_run: int = 0) -> list[dict[str, Any]]:
        """Every JSON log line (of runs since `since_run`)."""
        out: list[dict[str, Any]] = []
        run = -1
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError, TypeError, KeyError):
                entry = json.loads(line)
                if entry["event"] == "test.started":
                    run += 1
                elif run >= since_run:
                    out.append(entry)
        return out

    def events(self, since_run: int = 0) -> list[str]:
        return [entry["event"] for entry in self.lines(since_run)]

    def count(self, event: str) -> int:
        return self.events().count(event)

    async def wait_for(self, event: str, within: float = 30, since_run: int | None = None) -> float:
        """Until the log (of the current run) has `event`; → seconds waited."""
        run = self.starts - 1 if since_run is None else since_run
        started = time.monotonic()
        while event not in self.events(run):
            assert self.alive, f"{self.name} exited with {self.proc and self.proc.returncode}; see {self.log_path}"
            assert time.monotonic() - started < within, f"{self.name}: no {event} within {within} s ({self.log_path})"
            await asyncio.sleep(0.05)
        return time.monotonic() - started


async def wait_healthy(url: str, process: Process, within: float = 30) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=1) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            assert process.alive, f"the API exited; see {process.log_path}"
            assert time.monotonic() < deadline, f"the API did not answer within {within} s"
            await asyncio.sleep(0.1)
