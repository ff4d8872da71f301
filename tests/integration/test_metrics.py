"""The API's /metrics: cheap to scrape (no query per scrape), on an internal port or behind a token, and the
request histogram and refusal counters labelled by route template, method, status class and scimType."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from service.store import tenants
from tests.integration.conftest import Stack
from tests.integration.processes import free_port, http_get, running_api

SERIES = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>(?:[^"}]|"(?:[^"\\]|\\.)*")*)\})? (?P<value>\S+)$'
)


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text → {(name, labels): value}; fails on a malformed line."""
    series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SERIES.match(line)
        assert match, f"malformed line: {line!r}"
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
        series[(match["name"], labels)] = float(match["value"])
    return series


def value(series: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return series.get((name, frozenset(labels.items())), 0.0)


async def test_a_scrape_runs_no_query_and_sits_on_the_internal_port(database_url: str, stack: Stack, db: Any) -> None:
    port = free_port()
    env = {"SCIMSYNC_METRICS_PORT": str(port), "SCIMSYNC_METRICS_REFRESH_MS": "60000"}
    with running_api(database_url, stack.kafka, env) as api:
        assert (await http_get(f"{api.url}/metrics")).status_code == 404  # not on the public port
        internal = f"http://127.0.0.1:{port}/metrics"
        first = parse((await http_get(internal, wait=5)).text)
        assert value(first, "scimsync_dependency_up", dependency="postgres") == 1
        assert ("scimsync_outbox_unpublished_events", frozenset()) in first
        # Hold a lock that a per-scrape count(*) over the event log would wait for: scrapes must not notice.
        async with db.transaction():
            await db.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            for _ in range(20):
                assert (await http_get(internal, wait=1)).status_code == 200


async def test_a_token_guards_the_public_metrics(database_url: str, stack: Stack) -> None:
    with running_api(database_url, stack.kafka, {"SCIMSYNC_METRICS_TOKEN": "scrape-me"}) as api:
        assert (await http_get(f"{api.url}/metrics")).status_code == 401
        assert (await http_get(f"{api.url}/metrics", headers={"Authorization": "Bearer nope"})).status_code == 401
        ok = await http_get(f"{api.url}/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert ok.status_code == 200 and "scimsync_http_request_duration_seconds" in ok.text


async def test_latency_by_route_template_and_refusals_by_scim_type(database_url: str, stack: Stack, db: Any) -> None:
    tenant, token = await tenants.create(db, f"metrics-{uuid.uuid4().hex[:6]}")
    with running_api(database_url, stack.kafka) as api:
        base = f"{api.url}/scim/v2/{tenant.id}"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as scim:
            created = await scim.post("/Users", json={"userName": f"m-{uuid.uuid4().hex[:6]}@example.com"})
            assert created.status_code == 201
            user_id = created.json()["id"]
            assert (await scim.get(f"/Users/{user_id}")).status_code == 200
            assert (await scim.get(f"/Users/{uuid.uuid4()}")).status_code == 404
            assert (await scim.get("/Users", params={"filter": "userName eq"})).status_code == 400
            assert (await scim.get("/Users", headers={"Authorization": "Bearer wrong"})).status_code == 401
        series = parse((await http_get(f"{api.url}/metrics")).text)

    def count(route: str, method: str, status_class: str) -> float:
        labels = {"route": route, "method": method, "status_class": status_class}
        return value(series, "scimsync_http_request_duration_seconds_count", **labels)

    assert count("/scim/v2/{tenant_id}/Users", "POST", "2xx") == 1
    assert count("/scim/v2/{tenant_id}/Users/{id}", "GET", "2xx") == 1
    assert count("/scim/v2/{tenant_id}/Users/{id}", "GET", "4xx") == 1
    assert count("/scim/v2/{tenant_id}/Users", "GET", "4xx") == 1
    assert count("/scim/v2/{tenant_id}/*", "GET", "4xx") == 1  # refused before routing: 401
    assert not [labels for name, labels in series if tenant.id in str(labels) or user_id in str(labels)]
    assert value(series, "scimsync_scim_refused_total", status="400", scim_type="invalidFilter") == 1
    assert value(series, "scimsync_scim_refused_total", status="401", scim_type="none") == 1
    assert value(series, "scimsync_scim_refused_total", status="404", scim_type="none") == 1
    assert value(series, "scimsync_rate_limited_total") == 0
