"""`scimsync reconcile` as cron and alerts use it: stdout is the JSON report alone, and `--fix` that can't reach
Kafka, or whose repair Kafka refuses for good, exits 2 ("could not") with one line on stderr, not 1 ("drift") with
a traceback."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import httpx
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from consumers.booking.handlers import DOMAIN as BOOKING
from consumers.runtime.database import apply_schema
from consumers.workspace.handlers import DOMAIN as WORKSPACE

from .conftest import TenantInfo
from .pgproxy import free_port
from .test_consumers_helpers import ConsumerEnv
from .test_replay import KafkaDoor
from .topics import read_topic


async def _reconcile(env: ConsumerEnv, tenant: TenantInfo, *args: str, **environ: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "reconcile", "--tenant", tenant.id, *args,
        env=env.environ(SCIMSYNC_LOG_LEVEL="info", **environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def _drifted(env: ConsumerEnv, db: Any, scim: httpx.AsyncClient) -> None:
    """A user no projection has seen: the consumers' tables exist, but no consumer runs."""
    for domain in (BOOKING, WORKSPACE):
        await apply_schema(db, domain.schema_sql)
    assert (await scim.post("/Users", json={"userName": "unseen@example.com"})).status_code == 201


async def test_fix_with_kafka_down_exits_2_with_one_line(
    env: ConsumerEnv, db: Any, scim: httpx.AsyncClient, tenant: TenantInfo
) -> None:
    await _drifted(env, db, scim)
    nobody = f"127.0.0.1:{free_port()}"  # Kafka down: nothing listens there
    code, out, err = await _reconcile(env, tenant, "--fix", KAFKA_BOOTSTRAP_SERVERS=nobody)
    assert code == 2, (out, err)
    assert "Traceback" not in err and out == ""
    lines = [line for line in err.splitlines() if not line.startswith("{")]  # JSON log lines may precede it
    assert len(lines) == 1 and lines[0].startswith("scimsync: ") and "Kafka" in lines[0], err


async def test_fix_that_kafka_refuses_for_good_exits_2_with_one_line(
    env: ConsumerEnv, db: Any, scim: httpx.AsyncClient, tenant: TenantInfo
) -> None:
    """A repair Kafka refuses (here: the topic takes no record that large) is not "drift, repaired" either."""
    await _drifted(env, db, scim)
    admin = AIOKafkaAdminClient(bootstrap_servers=env.kafka)
    await admin.start()
    try:
        config = {"max.message.bytes": "200"}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, env.topic, configs=config)])
    finally:
        await admin.close()
    code, out, err = await _reconcile(env, tenant, "--fix")
    assert code == 2, (out, err)
    assert "Traceback" not in err and out == ""
    lines = [line for line in err.splitlines() if not line.startswith("{")]
    assert len(lines) == 1 and lines[0].startswith("scimsync: ") and "refused" in lines[0], err


async def test_stdout_carries_only_the_report_at_the_default_log_level(
    env: ConsumerEnv, db: Any, scim: httpx.AsyncClient, tenant: TenantInfo
) -> None:
    await _drifted(env, db, scim)
    code, out, err = await _reconcile(env, tenant, "--fix")  # publishes: the publisher logs at info
    assert code == 1, (out, err)
    report = json.loads(out)  # the whole of stdout is one JSON document
    assert report["drift"] is True and report["repairs_published"] == 1
    assert '"event":"kafka.connected"' in err  # the logs went to stderr


async def test_a_repair_of_a_user_deleted_while_kafka_was_slow_goes_out_erased(
    env: ConsumerEnv, db: Any, scim: httpx.AsyncClient, tenant: TenantInfo
) -> None:
    """--fix read the drifted user's latest event, then waits for Kafka; the person is deleted meanwhile. The repair
    must carry the log as it is when sent (erased), never the personal data of someone already deleted."""
    for domain in (BOOKING, WORKSPACE):
        await apply_schema(db, domain.schema_sql)
    personal = {
        "userName": "repair.leaver@example.com",
        "name": {"givenName": "Repairgiven", "familyName": "Leaverfam"},
    }
    user = (await scim.post("/Users", json=personal)).json()
    door = KafkaDoor(env.kafka, hold=True)
    kafka = await door.start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "reconcile", "--tenant", tenant.id, "--fix",
        env=env.environ(SCIMSYNC_LOG_LEVEL="warning", KAFKA_BOOTSTRAP_SERVERS=kafka),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        await asyncio.wait_for(door.knocked.wait(), 30)  # reconcile found the drift, read the event, connects
        assert (await scim.delete(f"/Users/{user['id']}")).status_code == 204
        door.open()
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
        door.close()
    assert proc.returncode == 1 and json.loads(out)["repairs_published"] == 1, (out, err)
    records = await read_topic(env.kafka, env.topic, lambda rs: len(rs) >= 1)
    assert [(r.value["type"], r.value["data"]) for r in records] == [
        ("user.created", {"id": user["id"], "erased": True})
    ]
    for secret in ("repair.leaver", "Repairgiven", "Leaverfam"):
        assert secret not in json.dumps([r.value for r in records]), secret
