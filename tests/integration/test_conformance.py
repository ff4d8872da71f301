"""An independent conformance check: the PyPI package scim2-tester against the running API."""

from __future__ import annotations

import asyncio
from typing import Any

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from .conftest import TenantInfo

FAILED = {Status.ERROR, Status.CRITICAL}


async def test_scim2_tester_finds_no_failure(tenant: TenantInfo) -> None:
    def run() -> list[object]:
        with Client(base_url=tenant.base_url, headers={"Authorization": f"Bearer {tenant.token}"}) as http:
            return list(check_server(SyncSCIMClient(http)))

    results = await asyncio.to_thread(run)  # scim2-tester is synchronous; keep the event loop free
    failures = [f"{r.title}: {r.reason}" for r in results if r.status in FAILED]  # type: ignore[attr-defined]
    assert len(results) > 120  # it really ran its checks (133 with Users and Groups published)
    assert failures == []
    groups = [r for r in results if r.resource_type == "Group" and r.status == Status.SUCCESS]  # type: ignore[attr-defined]
    assert len(groups) > 10  # ... on Groups too
    # Nothing skipped: POST /.search at the root is supported, so its two checks (one per resource type) run too.
    skipped = [(r.title, r.resource_type) for r in results if r.status == Status.SKIPPED]  # type: ignore[attr-defined]
    assert skipped == []
    searched = {r.resource_type for r in results if r.title == "search_with_attributes" and r.status == Status.SUCCESS}  # type: ignore[attr-defined]
    assert searched == {"User", "Group"}


async def test_scim2_client_reads_our_bulk_responses(tenant: TenantInfo) -> None:
    """scim2-tester has no bulk checks (0.5.2); scim2-client's own bulk call validates the BulkResponse instead."""
    from scim2_models import BulkOperation, BulkRequest, Group, GroupMember, User

    def run() -> Any:
        with Client(base_url=tenant.base_url, headers={"Authorization": f"Bearer {tenant.token}"}) as http:
            scim = SyncSCIMClient(http)
            scim.discover()  # the ServiceProviderConfig's bulk limits are checked before sending
            return scim.bulk(
                BulkRequest[User | Group](  # type: ignore[misc]
                    operations=[
                        BulkOperation[User](
                            method="POST", path="/Users", bulk_id="qwerty", data=User(user_name="Alice")
                        ),
                        BulkOperation[Group](
                            method="POST",
                            path="/Groups",
                            bulk_id="ytrewq",
                            data=Group(
                                display_name="Tour Guides",
                                members=[GroupMember(type="User", value="bulkId:qwerty")],
                            ),
                        ),
                        BulkOperation[User](
                            method="POST", path="/Users", bulk_id="again", data=User(user_name="Alice")
                        ),
                    ]
                )
            )

    response = await asyncio.to_thread(run)
    assert [(o.bulk_id, o.status) for o in response.operations] == [("qwerty", 201), ("ytrewq", 201), ("again", 409)]
    assert response.operations[2].response.scim_type == "uniqueness"
    assert response.operations[1].location.startswith(f"{tenant.base_url}/Groups/")
