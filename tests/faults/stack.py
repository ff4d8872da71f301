"""The fault suite's own Postgres + Kafka: `deploy/local/stack` with a private state folder and private ports.

The suite stops and restarts these at will, so they must never be the shared stack that other test runs (or
`make run`) use. Ports can be moved with SCIMSYNC_FAULTS_PGPORT / _KAFKA_PORT / _CONTROLLER_PORT.

The ports sit below Linux's ephemeral range (32768-60999): while a server is stopped, its clients keep connecting
to it on loopback, and a client whose ephemeral source port happens to equal the server's port connects to itself
(TCP simultaneous open) and then holds that port, so the server could not start again.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "deploy" / "local" / "stack"
STATE = ROOT / "deploy" / "local" / ".state" / "faults"


@dataclass(frozen=True)
class PrivateStack:
    pg_port: int = int(os.environ.get("SCIMSYNC_FAULTS_PGPORT") or 25432)
    kafka_port: int = int(os.environ.get("SCIMSYNC_FAULTS_KAFKA_PORT") or 29092)
    controller_port: int = int(os.environ.get("SCIMSYNC_FAULTS_CONTROLLER_PORT") or 29093)
    state: Path = STATE

    @property
    def admin_url(self) -> str:
        return f"postgresql://scimsync:scimsync@127.0.0.1:{self.pg_port}/scimsync"

    @property
    def kafka(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def database_url(self, name: str, port: int | None = None) -> str:
        return f"postgresql://scimsync:scimsync@127.0.0.1:{port or self.pg_port}/{name}"

    def environ(self) -> dict[str, str]:
        return {
            **os.environ,
            "SCIMSYNC_STACK_DIR": str(self.state),
            "PGPORT_LOCAL": str(self.pg_port),
            "KAFKA_PORT_LOCAL": str(self.kafka_port),
            "KAFKA_CONTROLLER_PORT_LOCAL": str(self.controller_port),
        }

    async def run(self, *args: str, within: float = 300) -> float:
        """`deploy/local/stack ARGS` on the private ports; fails on a non-zero exit. → seconds it took."""
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            str(STACK),
            *args,
            env=self.environ(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), within)
        assert proc.returncode == 0, f"stack {' '.join(args)} exited with {proc.returncode}:\n{out.decode()}"
        return time.monotonic() - started

    async def up(self, *which: str) -> float:
        return await self.run("up", *which)

    async def down(self, *which: str) -> float:
        return await self.run("down", *which)

    async def fresh(self) -> float:
        """Up, with an empty Kafka: a broker start reloads every consumer group it ever had, and the suite makes
        many; a fresh log keeps the restarts inside the tests quick. Postgres is kept (each test clones a database)."""
        await self.down("kafka")
        shutil.rmtree(self.state / "kafka-data", ignore_errors=True)
        return await self.up()
