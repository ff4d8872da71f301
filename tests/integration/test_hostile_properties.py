"""Random bodies, Bulk requests, filters and query strings at every SCIM endpoint of the real API (hypothesis).

Whatever arrives: never a 5xx; every 4xx is an RFC 7644 error body; a refused request changes nothing stored
(the tenant's users, groups, memberships and events are compared before and after). Bounded so that the
file runs in well under a minute.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .test_scim_protocol import ERROR, PATCH_OP

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
BOUNDED = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text as an attacker writes it: NUL, lone surrogates, control characters, quotes, escapes, long runs.
specials = st.sampled_from(
    ["\x00", "\ud800", "\udfff", "\x01", "\n", '"', "\\", "é", "😀", "\u2028", "%", "[", "]", "(", ")"]
)
nasty_text = st.one_of(
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=8), specials, st.text(max_size=8)),  # one for sure
    st.text(st.characters(codec=None, categories=None) | specials, max_size=30),
    st.sampled_from(["", " ", "9" * 30, "null", "ada@example.com", "x" * 5000]),
)
numbers = st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([2**64, -(2**70), 10**40])
scalars = st.none() | st.booleans() | numbers | nasty_text
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(nasty_text, inner, max_size=4), max_leaves=12
)
user_keys = st.sampled_from(
    ["userName", "UserName", "displayName", "active", "name", "name.givenName", "emails", "phoneNumbers", "title",
     "externalId", "id", "meta", "schemas", "password", "groups", "members", ENTERPRISE, f"{ENTERPRISE}:manager",
     "x509Certificates", "Operations", "op", "path", "value"]
)  # fmt: skip
# Mostly well-formed resources carrying nasty values (those reach the database), sometimes anything at all.
plausible = st.fixed_dictionaries(
    {"userName": nasty_text, "displayName": nasty_text},
    optional={
        "name": st.fixed_dictionaries({"givenName": nasty_text}),
        "emails": st.lists(st.fixed_dictionaries({"value": nasty_text, "type": nasty_text}), max_size=2),
        "externalId": nasty_text,
        "active": scalars,
        "members": st.lists(st.fixed_dictionaries({"value": nasty_text}), max_size=2),
        ENTERPRISE: st.fixed_dictionaries({"department": nasty_text, "manager": nasty_text}),
    },
)
bodies = plausible | plausible | st.dictionaries(user_keys | nasty_text, json_values, max_size=6)
attr_names = st.sampled_from(
    ["userName", "displayName", "active", "emails", "emails.value", "name.familyName", "meta.lastModified", "id",
     "externalId", "members", "members.value", "password", f"{ENTERPRISE}:department", "nope", "emails[type"]
)  # fmt: skip
operators = st.sampled_from(["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr", "EQ", "and", "or", "not"])
literals = (
    nasty_text.map(json.dumps)  # valid JSON strings with \u escapes, surrogates included
    | nasty_text.map(lambda t: f'"{t}"')  # raw, possibly broken
    | numbers.map(str)
    | st.sampled_from(["true", "false", "null", "1e999", "99999999999999999999999999", '"2026-01-01T00:00:00Z"'])
)
well_formed = st.tuples(
    st.sampled_from(["userName", "displayName", "emails.value", "externalId", "name.givenName", "members.value"]),
    st.sampled_from(["eq", "ne", "co", "sw", "ew", "gt", "le"]),
    nasty_text.map(json.dumps),
).map(" ".join)
comparisons = well_formed | well_formed | st.tuples(attr_names, operators, literals).map(" ".join)
filters = st.recursive(
    comparisons | nasty_text,
    lambda inner: (
        st.tuples(inner, st.sampled_from([" and ", " or ", " "]), inner).map("".join)
        | inner.map(lambda f: f"not ({f})")
        | inner.map(lambda f: f"({f}")
        | st.tuples(st.sampled_from(["emails", "members", "name"]), inner).map(lambda p: f"{p[0]}[{p[1]}]")
    ),
    max_leaves=6,
)


def pct(text: str) -> str:
    """Percent-encoded UTF-8, lone surrogates too (as their invalid 3-byte form): what a raw client can send."""
    return quote(text, safe="", errors="surrogatepass")


query_keys = st.sampled_from(
    ["filter", "startIndex", "count", "sortBy", "sortOrder", "attributes", "excludedAttributes", "FILTER"]
)
query_values = filters | numbers.map(str) | nasty_text | attr_names
raw_escapes = st.sampled_from(["%00", "%ED%A0%80", "%FF", "%", "%2", "&&", "=", "%0A", "+"])
query_strings = st.lists(st.tuples(query_keys | nasty_text, query_values, st.booleans(), raw_escapes), max_size=4).map(
    lambda items: "&".join(f"{pct(k)}={pct(v)}{e if raw else ''}" for k, v, raw, e in items)
)


def encode(body: Any) -> bytes:
    """JSON as a client could send it: non-ASCII escaped, lone surrogates as `\\udXXX` escapes."""
    return json.dumps(body, ensure_ascii=True).encode()


async def snapshot(db: Any, tenant_id: str) -> tuple[Any, ...]:
    tenant = uuid.UUID(tenant_id)
    row = await db.fetchrow(
        """SELECT
             (SELECT coalesce(jsonb_agg(jsonb_build_array(id, version, resource) ORDER BY id), '[]')
              FROM users WHERE tenant_id = $1) AS users,
             (SELECT coalesce(jsonb_agg(jsonb_build_array(id, version, resource) ORDER BY id), '[]')
              FROM groups WHERE tenant_id = $1) AS groups,
             (SELECT coalesce(jsonb_agg(jsonb_build_array(group_id, user_id) ORDER BY group_id, user_id), '[]')
              FROM group_members WHERE tenant_id = $1) AS members,
             (SELECT coalesce(jsonb_agg(jsonb_build_array(sequence, type, version, data) ORDER BY sequence), '[]')
              FROM events WHERE tenant_id = $1) AS events""",
        tenant,
    )
    return tuple(row)


def assert_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, f"{response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/scim+json"), response.headers
        body = response.json()
        assert body["schemas"] == [ERROR] and body["status"] == str(response.status_code), body
        assert isinstance(body["detail"], str) and body["detail"]
        assert "Traceback" not in response.text


class Target:
    """A tenant with one user and one group to aim PUT/PATCH/DELETE at."""

    def __init__(self, scim: httpx.AsyncClient, db: Any, tenant_id: str) -> None:
        self.scim, self.db, self.tenant_id = scim, db, tenant_id
        self.user = self.group = ""

    async def ensure(self) -> None:
        if not self.user or (await self.scim.get(f"/Users/{self.user}")).status_code != 200:
            created = await self.scim.post("/Users", json={"userName": f"target-{uuid.uuid4().hex}"})
            self.user = created.json()["id"]
        if not self.group or (await self.scim.get(f"/Groups/{self.group}")).status_code != 200:
            created = await self.scim.post("/Groups", json={"displayName": f"g-{uuid.uuid4().hex}"})
            self.group = created.json()["id"]

    async def send(self, method: str, path: str, **kwargs: Any) -> None:
        """One request; if refused, nothing stored may differ."""
        before = await snapshot(self.db, self.tenant_id)
        response = await self.scim.request(method, path, **kwargs)
        assert_answer(response)
        if response.status_code >= 400:
            assert await snapshot(self.db, self.tenant_id) == before, f"{method} {path} changed state"


@given(body=bodies | json_values, where=st.sampled_from(["user", "group"]), method=st.sampled_from(["POST", "PUT"]))
@BOUNDED
async def test_random_json_bodies(
    scim: httpx.AsyncClient, db: Any, tenant: Any, body: Any, where: str, method: str
) -> None:
    target = Target(scim, db, tenant.id)
    await target.ensure()
    collection = "/Users" if where == "user" else "/Groups"
    path = collection if method == "POST" else f"{collection}/{target.user if where == 'user' else target.group}"
    await target.send(method, path, content=encode(body))


patch_ops = st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "replace", "remove", "Replace", "move"]) | nasty_text},
    optional={
        "path": attr_names | filters.map(lambda f: f"emails[{f}]") | nasty_text,
        "value": json_values | plausible,
    },
)


@given(
    operations=st.lists(patch_ops | st.dictionaries(nasty_text, json_values, max_size=3), max_size=3) | json_values,
    where=st.sampled_from(["user", "group"]),
)
@BOUNDED
async def test_random_patches(scim: httpx.AsyncClient, db: Any, tenant: Any, operations: Any, where: str) -> None:
    target = Target(scim, db, tenant.id)
    await target.ensure()
    path = f"/Users/{target.user}" if where == "user" else f"/Groups/{target.group}"
    await target.send("PATCH", path, content=encode({"schemas": [PATCH_OP], "Operations": operations}))


@given(text=filters, start=numbers | nasty_text, count=numbers | nasty_text, where=st.sampled_from(["Users", "Groups"]))
@BOUNDED
async def test_random_filters_in_searches(
    scim: httpx.AsyncClient, db: Any, tenant: Any, text: str, start: Any, count: Any, where: str
) -> None:
    target = Target(scim, db, tenant.id)
    body = {"schemas": [SEARCH], "filter": text, "startIndex": start, "count": count}
    await target.send("POST", f"/{where}/.search", content=encode(body))
    await target.send("GET", f"/{where}?filter={pct(text)}")
    await target.send("POST", "/.search", content=encode(body))  # both types at once (root search)


BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
patch_bodies = st.fixed_dictionaries({"schemas": st.just([PATCH_OP]), "Operations": st.lists(patch_ops, max_size=2)})
bulk_operations = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["POST", "PUT", "PATCH", "DELETE", "GET"]) | nasty_text,
        "path": st.sampled_from(["/Users", "/Groups", "/Users/{user}", "/Groups/{group}", "/Users/bulkId:a"])
        | nasty_text,
    },
    optional={
        "bulkId": st.sampled_from(["a", "b"]) | nasty_text,
        "data": plausible | json_values | patch_bodies,
        "version": nasty_text | numbers,
    },
)


def aimed(operation: Any, target: Target) -> Any:
    """A Bulk operation whose path names the target user or group, with their ids."""
    if isinstance(operation, dict) and operation.get("path") in ("/Users/{user}", "/Groups/{group}"):
        return {**operation, "path": operation["path"].format(user=target.user, group=target.group)}
    return operation


@given(operations=st.lists(bulk_operations | json_values, max_size=4) | json_values, fail=st.none() | numbers)
@BOUNDED
async def test_random_bulk_requests(scim: httpx.AsyncClient, db: Any, tenant: Any, operations: Any, fail: Any) -> None:
    """Each operation's own answer counts too: a BulkResponse may carry no 5xx either."""
    target = Target(scim, db, tenant.id)
    await target.ensure()
    if isinstance(operations, list):
        operations = [aimed(operation, target) for operation in operations]
    body = {"schemas": [BULK], "Operations": operations, **({} if fail is None else {"failOnErrors": fail})}
    response = await scim.post("/Bulk", content=encode(body))
    assert_answer(response)
    if response.status_code == 200:
        for result in response.json()["Operations"]:
            assert int(result["status"]) < 500, result


@given(
    query=query_strings,
    path=st.sampled_from(
        ["/Users", "/Groups", "/Users/{user}", "/Groups/{group}", "/ServiceProviderConfig", "/ResourceTypes",
         "/ResourceTypes/User", "/Schemas", f"/Schemas/{ENTERPRISE}", "/Users/.search", "/.search", "/Me", "/Bulk"]
    ),
    method=st.sampled_from(["GET", "GET", "POST", "DELETE", "PATCH", "PUT"]),
)  # fmt: skip
@BOUNDED
async def test_random_query_strings_at_every_endpoint(
    scim: httpx.AsyncClient, db: Any, tenant: Any, query: str, path: str, method: str
) -> None:
    target = Target(scim, db, tenant.id)
    await target.ensure()
    url = path.format(user=target.user, group=target.group)
    if method == "DELETE":  # deleting the target is not a refusal; aim at an id that may or may not exist
        url = url.replace(target.user, str(uuid.uuid4())).replace(target.group, str(uuid.uuid4()))
    await target.send(method, f"{url}?{query}", content=b"{}" if method in ("POST", "PUT", "PATCH") else None)
