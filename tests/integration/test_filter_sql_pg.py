"""Compiled filters against a real PostgreSQL: each filter returns exactly the expected users, in SQL and in memory."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from service.domain.filter import parse_filter
from service.domain.matching import matches
from service.domain.schema import ENTERPRISE_SCHEMA as ENT
from service.domain.schema import USER_TYPE, resolve
from service.store.filter_sql import USER_COLUMNS, order_sql, to_sql

TENANT, OTHER_TENANT = uuid.uuid4(), uuid.uuid4()
IDS = {name: uuid.UUID(int=i + 1) for i, name in enumerate("abcdefgh")}


def user(
    key: str, user_name: str, created: str, active: bool = True, ent: dict[str, Any] | None = None, **attrs: Any
) -> dict[str, Any]:
    extension = {ENT: ent} if ent else {}
    return {"id": str(IDS[key]), "userName": user_name, "active": active, "created": created, **attrs, **extension}


USERS = [
    user(
        "a",
        "alice@example.com",
        "2020-01-01T00:00:00Z",
        externalId="ext-A",
        name={"givenName": "Alice", "familyName": "Smith"},
        title="Engineer",
        emails=[
            {"type": "work", "value": "alice@example.com", "primary": True},
            {"type": "home", "value": "alice@home.org"},
        ],
        ent={"department": "R&D", "manager": {"value": str(IDS["c"])}},
    ),
    user(
        "b",
        "Bob@Example.com",
        "2021-06-15T12:00:00Z",
        active=False,
        externalId="ext-b",
        name={"givenName": "Bob", "familyName": "Jones"},
        emails=[{"type": "home", "value": "bob@example.com"}],
        ent={"department": "Sales"},
    ),
    user(
        "c",
        "carol@corp.io",
        "2022-03-01T08:30:00+02:00",
        name={"givenName": "Carol"},
        title="",
        emails=[{"type": "work", "value": "carol@corp.io"}],
        ent={"department": "r&d"},
    ),
    user("d", "dave", "2023-01-01T00:00:00Z", emails=[], displayName="Dave O'Brien"),
    user(
        "e",
        "eve@example.com",
        "2019-12-31T23:59:59Z",
        active=False,
        nickName="x'); drop table users; --",
        emails={"type": "work", "value": "eve@example.com"},
    ),  # malformed: not an array
    user(
        "f",
        "frank%_@example.com",
        "2024-05-05T05:05:05Z",
        title="Manager",
        name={"familyName": "Smith"},
        emails=[{"type": "work", "value": "frank@x.com"}, {"type": "work", "value": "f@y.com"}],
    ),
    user(
        "g",
        "grace@example.com",
        "2024-06-01T00:00:00Z",
        externalId="EXT-A",
        title=None,
        ent={"manager": {"value": "nobody"}},
    ),
    user("h", "heidi@corp.io", "2024-07-01T00:00:00Z", name={}, emails=[{"value": "heidi@corp.io"}]),
]

CASES = [
    ('userName eq "bob@example.com"', "b"),
    ('UserName eq "ALICE@EXAMPLE.COM"', "a"),
    ('externalId eq "ext-A"', "a"),
    ('externalId eq "ext-a"', ""),
    (f'id eq "{IDS["c"]}"', "c"),
    ('id eq "not-a-uuid"', ""),
    ('id ne "not-a-uuid"', "abcdefgh"),
    ("active eq false", "be"),
    ('active eq "True" and userName ew "corp.io"', "ch"),
    ('userName sw "frank%_"', "f"),
    ('userName co "%"', "f"),
    ('userName co "_"', "f"),
    ('name.familyName eq "smith"', "af"),
    ('name.givenName ne "alice"', "bcdefgh"),
    ("name.givenName pr", "abc"),
    ("name pr", "abcf"),
    ("title pr", "af"),
    ("not (title pr)", "bcdegh"),
    ("title eq null", "bcdegh"),
    ('emails[type eq "work"]', "acf"),
    ('emails[type eq "work" and value co "@example.com"]', "a"),
    ('emails[type eq "work"].value ew ".COM"', "af"),
    ('emails[type eq "home"].value eq "alice@example.com"', ""),
    ('emails.type eq "home" and emails.value eq "alice@example.com"', "a"),
    ('emails[value eq "ALICE@example.com"]', "a"),
    ('emails[value eq "eve@example.com"]', ""),  # e's emails is not an array
    ('emails[type eq "work" and value eq "frank@X.com"]', "f"),
    ('emails[value eq "alice@home.org" and type eq "work"]', ""),
    ('emails co "corp.io"', "ch"),
    ("emails pr", "abcfh"),
    ("emails[primary eq true]", "a"),
    ("not (emails[primary eq true])", "bcdefgh"),
    ('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "R&D"', "ac"),
    ('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department ne "r&d"', "bdefgh"),
    (f'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "{IDS["c"]}"', "a"),
    ('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager[value sw "NOB"]', "g"),
    ('meta.created gt "2022-01-01T00:00:00Z"', "cdfgh"),
    ('meta.created lt "2022-03-01T07:00:00Z"', "abce"),  # c is 06:30Z
    ('meta.lastModified ge "2024-05-05T05:05:05Z" and meta.lastModified le "2024-06-01"', "fg"),
    ('meta.resourceType eq "User" and userName sw "A"', "a"),
    ('userName eq "alice@example.com" or userName eq "dave" and active eq false', "a"),
    ('(userName eq "alice@example.com" or userName eq "dave") and active eq true', "ad"),
    ('not (userName eq "alice@example.com" or active eq false) and title ne "Manager"', "cdgh"),
    ('displayName eq "Dave O\'Brien"', "d"),
    ('title gt "F" and title lt "N"', "f"),
    # injection attempts: nothing found, nothing broken
    ('userName eq "x\'); drop table users; --"', ""),
    ('userName eq "\\" or 1=1 --"', ""),
    ('nickName eq "x\'); drop table users; --"', "e"),
    ("displayName co \"' OR '1'='1\"", ""),
    ('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "$1"', ""),
]


@pytest.fixture(scope="module")
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """The real, migrated `users` table of the session database, with two tenants of the same users."""
    connection = await asyncpg.connect(database_url)
    await connection.executemany(
        "INSERT INTO tenants (id, name, token_hash) VALUES ($1, 'filters', '')", [(TENANT,), (OTHER_TENANT,)]
    )
    rows = []
    for u in USERS:
        resource = {k: v for k, v in u.items() if k not in ("id", "created")}
        created = datetime.fromisoformat(u["created"]).astimezone(UTC)
        for tenant in (TENANT, OTHER_TENANT):
            rows.append(
                (
                    tenant,
                    uuid.UUID(u["id"]),
                    u["userName"],
                    u.get("externalId"),
                    u["active"],
                    1,
                    json.dumps(resource),
                    created,
                    created,
                )
            )
    await connection.executemany(
        "INSERT INTO users (tenant_id, id, user_name, external_id, active, version, resource, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)",
        rows,
    )
    yield connection
    await connection.close()


def names(ids: list[uuid.UUID]) -> str:
    by_id = {v: k for k, v in IDS.items()}
    return "".join(sorted(by_id[i] for i in ids))


def in_memory(text: str) -> str:
    expr = parse_filter(text)
    found = []
    for u in USERS:
        obj = {k: v for k, v in u.items() if k != "created"}
        obj["meta"] = {"resourceType": "User", "created": u["created"], "lastModified": u["created"]}
        if matches(expr, obj):
            found.append(uuid.UUID(u["id"]))
    return names(found)


@pytest.mark.parametrize(("text", "expected"), CASES)
async def test_filter(conn: asyncpg.Connection, text: str, expected: str) -> None:
    params: list[object] = [TENANT]
    where = to_sql(parse_filter(text), params)
    rows = await conn.fetch(f"SELECT id FROM users WHERE tenant_id = $1 AND {where}", *params)
    assert names([r["id"] for r in rows]) == expected, where
    assert in_memory(text) == expected  # the in-memory evaluator agrees with the database


async def test_injection_leaves_table_intact(conn: asyncpg.Connection) -> None:
    assert await conn.fetchval("SELECT count(*) FROM users WHERE tenant_id = $1", TENANT) == len(USERS)


@pytest.mark.parametrize(
    ("sort_by", "expected"),
    [("userName", "abcdefgh"), ("meta.created", "eabcdfgh"), ("name.familyName", "bafcdegh"), ("emails", "abcfhdeg")],
)
async def test_order(conn: asyncpg.Connection, sort_by: str, expected: str) -> None:
    ref = resolve(USER_TYPE, sort_by)
    assert ref is not None
    order = f"{order_sql(ref)} NULLS LAST, seq"
    rows = await conn.fetch(f"SELECT id FROM users WHERE tenant_id = $1 ORDER BY {order}", TENANT)
    assert names_in_order([r["id"] for r in rows]) == expected


def names_in_order(ids: list[uuid.UUID]) -> str:
    by_id = {v: k for k, v in IDS.items()}
    return "".join(by_id[i] for i in ids)


# Lookups by email in every form, against a tenant of awkward rows: stored in mixed case, elements that are not
# objects, `emails` not an array, missing, empty, a value that is not a string.
EMAIL_ROWS: list[Any] = [
    [{"type": "Work", "value": "MiXeD@Example.COM"}, {"type": "home", "value": "mixed@home.org"}],
    ["mixed@example.com", 5, None, ["mixed@example.com"], {"value": None}, {"value": 7, "type": "work"}],
    {"type": "work", "value": "mixed@example.com"},
    "mixed@example.com",
    [],
    None,
    [{"value": "mixed@example.com"}],
    [{"type": "work", "value": "other@example.com"}, {"type": "home", "value": "MIXED@EXAMPLE.COM"}],
]
EMAIL_LOOKUPS = [
    'emails.value eq "mixed@example.com"',
    'emails[value eq "mixed@example.com"]',
    'emails[value eq "MIXED@example.com"]',
    'emails[value eq "7"]',
    'emails[value eq "nobody@example.com"]',
    'emails[type eq "work" and value eq "mixed@example.com"]',
    'emails[value eq "mixed@example.com" and type eq "home"]',
    'emails[value eq "mixed@example.com" and (type eq "work" or type eq "home")]',
    'emails[value eq "mixed@example.com" and not (type eq "work")]',
    'emails[value eq "mixed@example.com" or type eq "home"]',
    'emails[type eq "work"].value eq "mixed@example.com"',
    'not (emails[value eq "mixed@example.com"])',
    'emails[value eq "mixed@example.com"] and emails[value eq "mixed@home.org"]',
]


@pytest.fixture(scope="module")
async def email_tenant(conn: asyncpg.Connection) -> uuid.UUID:
    tenant = uuid.uuid4()
    await conn.execute("INSERT INTO tenants (id, name, token_hash) VALUES ($1, 'emails', '')", tenant)
    rows = []
    for i, emails in enumerate(EMAIL_ROWS):
        resource = {"userName": f"u{i}"} | ({} if emails is None else {"emails": emails})
        rows.append((tenant, uuid.UUID(int=100 + i), f"u{i}", json.dumps(resource)))
    await conn.executemany(
        "INSERT INTO users (tenant_id, id, user_name, active, version, resource, created_at, updated_at)"
        " VALUES ($1, $2, $3, true, 1, $4::jsonb, now(), now())",
        rows,
    )
    return tenant


@pytest.mark.parametrize("text", EMAIL_LOOKUPS)
async def test_an_email_lookup_finds_what_the_element_by_element_scan_finds(
    conn: asyncpg.Connection, email_tenant: uuid.UUID, text: str
) -> None:
    """The index-served SQL matches exactly the users that the plain scan of every element (no index) matches."""
    found = {}
    for name, columns in (("indexed", USER_COLUMNS), ("scan", dataclasses.replace(USER_COLUMNS, lowered_arrays={}))):
        params: list[object] = [email_tenant]
        where = to_sql(parse_filter(text), params, columns)
        rows = await conn.fetch(f"SELECT id FROM users WHERE tenant_id = $1 AND {where} ORDER BY id", *params)
        found[name] = [r["id"].int - 100 for r in rows]
    assert found["indexed"] == found["scan"]
