"""Write-time limits through the real API: a resource too large for one event is refused with the limit named,
nothing stored changes; the largest one allowed is stored and published to a topic with Kafka's defaults."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from service.domain.limits import MAX_RESOURCE_BYTES
from tests.unit.test_limits import largest_user

from . import test_relay
from .test_relay import RelayProcess, versions_seen
from .topics import read_topic

relays, topic = test_relay.relays, test_relay.topic
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def emails(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"value": f"alias.{i:06d}@example.com", "type": "other"} for i in range(start, start + n)]


def assert_names_the_limit(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text[:300]
    body = response.json()
    assert body["scimType"] == "invalidValue" and body["status"] == "400"
    assert "262,144 bytes" in body["detail"] and "maxResourceBytes" in body["detail"]


async def test_a_user_too_large_for_one_event_is_refused_and_nothing_is_stored(
    scim: httpx.AsyncClient, db: Any
) -> None:
    big = {"userName": "too.big@example.com", "emails": emails(6000)}  # ~330 KB: under the body limit
    assert MAX_RESOURCE_BYTES < len(orjson.dumps(big)) < 1_048_576
    assert_names_the_limit(await scim.post("/Users", json=big))
    found = await scim.get("/Users", params={"filter": 'userName eq "too.big@example.com"'})
    assert found.json()["totalResults"] == 0


async def test_a_user_grown_past_the_limit_by_patch_or_put_is_refused_and_keeps_its_version(
    scim: httpx.AsyncClient, db: Any
) -> None:
    user = (await scim.post("/Users", json={"userName": "grows@example.com", "emails": emails(3000)})).json()
    grow = {"schemas": [PATCH], "Operations": [{"op": "add", "path": "emails", "value": emails(3000, 3000)}]}
    assert_names_the_limit(await scim.patch(f"/Users/{user['id']}", json=grow))
    replaced = {"userName": "grows@example.com", "emails": emails(6000)}
    assert_names_the_limit(await scim.put(f"/Users/{user['id']}", json=replaced))
    after = (await scim.get(f"/Users/{user['id']}")).json()
    assert after["meta"]["version"] == 'W/"1"' and len(after["emails"]) == 3000
    assert await db.fetchval("SELECT count(*) FROM events WHERE subject = $1", uuid.UUID(user["id"])) == 1


async def test_the_largest_allowed_user_is_stored_and_published_with_kafkas_default_limits(
    scim: httpx.AsyncClient, tenant: Any, stack: Any, topic: str, relays: Callable[..., RelayProcess]
) -> None:
    body = largest_user()
    created = await scim.post("/Users", json=body)
    assert created.status_code == 201, created.text[:300]
    user_id = created.json()["id"]
    relays()  # creates the topic with Kafka's defaults (max.message.bytes 1 MiB)
    key = f"{tenant.id}:{user_id}"
    [record] = [r for r in await read_topic(stack.kafka, topic, versions_seen(tenant.id, {key: 1})) if r.key == key]
    assert record.value["data"]["emails"] == body["emails"] and record.value["data"]["title"] == body["title"]
