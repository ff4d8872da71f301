"""The fault suite's fixtures: a private Postgres + Kafka for the whole session, a pipeline per test, and the
figures every test measures (printed at the end of the run and kept in .pytest_cache/faults/figures.json).

The suite starts its own stack (tests/faults/stack.py) and stops it at the end, so it can stop and restart
Postgres and Kafka without disturbing anything else; DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS are not used.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from consumers.domains import DOMAINS
from consumers.runtime.database import apply_schema
from service.store import migrator
from service.store.pool import connect
from tests.faults.pipeline import Pipeline
from tests.faults.stack import ROOT, PrivateStack

LOGS = ROOT / ".pytest_cache" / "faults"
FIGURES: list[dict[str, Any]] = []
TEMPLATE = "faults_template"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every fault test is `slow`: `pytest -m "not slow"` leaves the suite (and its private stack) out."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
async def private_stack() -> AsyncIterator[PrivateStack]:
    stack = PrivateStack()
    await stack.fresh()
    try:
        yield stack
    finally:
        await stack.down()


@pytest.fixture(scope="session")
async def template(private_stack: PrivateStack) -> AsyncIterator[str]:
    """A migrated database with the consumers' schemas; every test's database is a copy of it."""
    admin = await connect(private_stack.admin_url)
    try:
        for row in await admin.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'faults%'"):
            await admin.execute(f'DROP DATABASE "{row["datname"]}" WITH (FORCE)')  # left by an interrupted run
        await admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
    finally:
        await admin.close()
    conn = await connect(private_stack.database_url(TEMPLATE))
    try:
        await migrator.migrate(conn)
        for domain in DOMAINS.values():
            await apply_schema(conn, domain.schema_sql)
    finally:
        await conn.close()
    yield TEMPLATE
    admin = await connect(private_stack.admin_url)  # a new session: the tests restart Postgres
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def pipeline(
    private_stack: PrivateStack, template: str, request: pytest.FixtureRequest
) -> AsyncIterator[Pipeline]:
    log_dir = LOGS / re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    made = Pipeline(private_stack, template, log_dir)
    await made.create()
    try:
        yield made
    finally:
        await made.close()


class Figures:
    """What a test measured, for the lead to quote: one entry per test."""

    def __init__(self, test: str) -> None:
        self.entry: dict[str, Any] = {"test": test}

    def __call__(self, **values: Any) -> None:
        self.entry.update({k: round(v, 2) if isinstance(v, float) else v for k, v in values.items()})


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    recorded = Figures(request.node.name)
    yield recorded
    FIGURES.append(recorded.entry)
    LOGS.mkdir(parents=True, exist_ok=True)
    (LOGS / "figures.json").write_text(json.dumps(FIGURES, indent=2) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("fault suite: measured")
    for entry in FIGURES:
        rest = ", ".join(f"{k}={v}" for k, v in entry.items() if k != "test")
        terminalreporter.write_line(f"{entry['test']}: {rest}")
    terminalreporter.write_line(f"(also in {Path(LOGS / 'figures.json').relative_to(ROOT)})")
