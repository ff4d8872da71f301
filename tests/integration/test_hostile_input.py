"""Input an attacker would try: each case once answered 500. Now a 400 with an RFC 7644 error body, nothing stored."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson

from service.domain.limits import MAX_VALUE_LENGTH

from .test_scim_protocol import PATCH_OP, assert_scim_error, user_count

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


def _json(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)


async def test_nul_in_any_body_string_is_400_invalid_value(scim: httpx.AsyncClient, db: Any, tenant: Any) -> None:
    bodies = [
        {"userName": "a\u0000b@example.com"},
        {"userName": "ok@example.com", "displayName": "Ada\u0000"},
        {"userName": "ok@example.com", "name": {"givenName": "\u0000"}},
        {"userName": "ok@example.com", "emails": [{"value": "x@example.com", "type": "w\u0000rk"}]},
        {"userName": "ok@example.com", "unknownAttribute": "\u0000"},
        {"userName": "ok@example.com", "key\u0000": "value"},
    ]
    for body in bodies:
        assert_scim_error(await scim.post("/Users", content=_json(body)), 400, "invalidValue")
    assert await user_count(db, tenant.id) == 0
    assert_scim_error(await scim.post("/Groups", content=_json({"displayName": "team\u0000"})), 400, "invalidValue")

    created = (await scim.post("/Users", json={"userName": "ada@example.com"})).json()
    patch = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName", "value": "x\u0000"}]}
    assert_scim_error(await scim.patch(f"/Users/{created['id']}", content=_json(patch)), 400, "invalidValue")
    put = {"userName": "ada@example.com", "displayName": "\u0000"}
    assert_scim_error(await scim.put(f"/Users/{created['id']}", content=_json(put)), 400, "invalidValue")
    assert (await scim.get(f"/Users/{created['id']}")).json()["meta"]["version"] == 'W/"1"'


async def test_a_lone_surrogate_in_any_body_is_400_invalid_value(scim: httpx.AsyncClient, db: Any, tenant: Any) -> None:
    """JSON's grammar allows `\\ud800` alone (RFC 8259 §8.2); it can't be stored, like NUL: the same answer."""
    created = (await scim.post("/Users", json={"userName": "ada@example.com"})).json()
    group = (await scim.post("/Groups", json={"displayName": "team"})).json()
    patch = '{"schemas": ["%s"], "Operations": [{"op": "replace", "path": "displayName", "value": "x\\udc00"}]}'
    for method, path, body in [
        ("POST", "/Users", '{"userName": "a\\ud800b@example.com"}'),
        ("POST", "/Users", '{"userName": "ok@example.com", "name": {"givenName": "\\udfff"}}'),
        ("PUT", f"/Users/{created['id']}", '{"userName": "ada@example.com", "displayName": "\\ud83d"}'),
        ("PATCH", f"/Users/{created['id']}", patch % PATCH_OP),
        ("POST", "/Groups", '{"displayName": "\\ud800"}'),
        ("PATCH", f"/Groups/{group['id']}", patch % PATCH_OP),
        ("POST", "/Bulk", '{"Operations": [{"method": "POST", "path": "/Users", "data": {"userName": "\\ud800"}}]}'),
    ]:
        assert_scim_error(await scim.request(method, path, content=body.encode()), 400, "invalidValue")
    assert await user_count(db, tenant.id) == 1
    assert (await scim.get(f"/Users/{created['id']}")).json()["meta"]["version"] == 'W/"1"'
    # A surrogate pair is one character, stored as such.
    paired = await scim.post("/Users", content=b'{"userName": "emoji\\ud83d\\ude00@example.com"}')
    assert paired.status_code == 201 and paired.json()["userName"] == "emoji\U0001f600@example.com"


async def test_nul_lone_surrogates_and_control_characters_in_filters_are_400_invalid_filter(
    scim: httpx.AsyncClient,
) -> None:
    filters = [
        'userName eq "a\\u0000b"',  # a JSON escape of NUL
        'userName eq "a\u0000b"',  # a raw NUL
        'userName eq "\\ud800"',  # a lone high surrogate
        'userName eq "x\\udc00y"',  # a lone low surrogate
        'displayName co "a\u0001b"',  # a raw control character inside a string
        'userName eq "line\nbreak"',
        'emails[value eq "\\u0000"]',
    ]
    for text in filters:
        assert_scim_error(await scim.get("/Users", params={"filter": text}), 400, "invalidFilter")
        assert_scim_error(
            await scim.get("/Groups", params={"filter": text.replace("userName", "displayName")}), 400, "invalidFilter"
        )
        # A NUL that is in the search body's JSON itself is refused with the body, as any other.
        expected = "invalidValue" if "\x00" in text else "invalidFilter"
        search = {"schemas": [SEARCH], "filter": text}
        assert_scim_error(await scim.post("/Users/.search", content=_json(search)), 400, expected)
    # Escaped control characters are valid JSON and match nothing here: an ordinary empty answer.
    listed = await scim.get("/Users", params={"filter": 'userName eq "tab\\there"'})
    assert listed.status_code == 200 and listed.json()["totalResults"] == 0


async def test_paging_numbers_beyond_64_bits(scim: httpx.AsyncClient) -> None:
    await scim.post("/Users", json={"userName": "one@example.com"})
    huge = "99999999999999999999999999999"
    # RFC 7644 §3.4.2.4 interprets out-of-range paging rather than refusing it: a start past the end is an
    # empty page, a count above the maximum is the maximum.
    page = await scim.get("/Users", params={"startIndex": huge})
    assert page.status_code == 200, page.text
    assert page.json()["totalResults"] == 1 and page.json()["Resources"] == [] and page.json()["itemsPerPage"] == 0
    page = await scim.get("/Users", params={"count": huge})
    assert page.status_code == 200 and page.json()["itemsPerPage"] == 1
    page = await scim.get("/Groups", params={"startIndex": huge, "count": huge})
    assert page.status_code == 200 and page.json()["Resources"] == []
    page = await scim.get("/Users", params={"startIndex": "-" + huge, "count": "-" + huge})
    assert page.status_code == 200 and page.json()["startIndex"] == 1 and page.json()["itemsPerPage"] == 0
    for field in (f'"startIndex": {huge}', '"startIndex": 1e300', '"count": 1e300', f'"count": -{huge}'):
        found = await scim.post("/Users/.search", content=f'{{"schemas": ["{SEARCH}"], {field}}}'.encode())
        assert found.status_code == 200, found.text
    for body in ({"startIndex": 1.5}, {"count": "ten"}, {"startIndex": [1]}, {"count": True}):
        found = await scim.post("/Users/.search", content=_json({"schemas": [SEARCH], **body}))
        assert_scim_error(found, 400, "invalidValue")
    # Okta's paging still works as before.
    page = await scim.get("/Users", params={"startIndex": "1", "count": "100"})
    assert page.json()["startIndex"] == 1 and page.json()["itemsPerPage"] == 1


async def test_every_value_the_server_accepts_can_be_looked_up(scim: httpx.AsyncClient, db: Any, tenant: Any) -> None:
    too_long = "x" * (MAX_VALUE_LENGTH + 1)
    refused = await scim.post("/Users", json={"userName": too_long})
    assert_scim_error(refused, 400, "invalidValue")
    assert str(MAX_VALUE_LENGTH) in refused.json()["detail"]
    assert_scim_error(
        await scim.post("/Users", json={"userName": "ok@x", "displayName": too_long}), 400, "invalidValue"
    )
    assert_scim_error(await scim.post("/Groups", json={"displayName": too_long}), 400, "invalidValue")
    assert await user_count(db, tenant.id) == 0

    # The longest values, including ones whose every character must be escaped in a filter.
    for value in ("u" * MAX_VALUE_LENGTH, '"' * MAX_VALUE_LENGTH, "\u0001" * MAX_VALUE_LENGTH, "é" * MAX_VALUE_LENGTH):
        created = await scim.post("/Users", content=_json({"userName": value}))
        assert created.status_code == 201, created.text
        literal = orjson.dumps(value).decode()  # the JSON string, escapes and quotes included
        found = await scim.post(
            "/Users/.search", content=_json({"schemas": [SEARCH], "filter": f"userName eq {literal}"})
        )
        assert found.status_code == 200, found.text
        assert [r["id"] for r in found.json()["Resources"]] == [created.json()["id"]]
        listed = await scim.get("/Users", params={"filter": f"userName eq {literal}"})
        assert listed.status_code == 200, listed.text
        assert listed.json()["totalResults"] == 1
    group = await scim.post("/Groups", json={"displayName": "g" * MAX_VALUE_LENGTH})
    assert group.status_code == 201
    found = await scim.get("/Groups", params={"filter": f'displayName eq "{"g" * MAX_VALUE_LENGTH}"'})
    assert found.json()["totalResults"] == 1


async def test_ids_in_urls_that_are_not_ids(scim: httpx.AsyncClient, api_url: str, tenant: Any) -> None:
    for weird in ("%00", "%ED%A0%80", "x" * 5000, "..%2F..%2Fetc"):
        assert (await scim.get(f"/Users/{weird}")).status_code in (404, 400)
    async with httpx.AsyncClient(headers=tenant.headers) as client:
        for spelling in ("%00", str(uuid.uuid4()) + "%00", "x" * 5000):
            response = await client.get(f"{api_url}/scim/v2/{spelling}/Users")
            assert_scim_error(response, 401)
