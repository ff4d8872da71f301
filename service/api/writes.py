"""The writes on Users and Groups, one function each, called by their endpoints and by `/Bulk` alike.

Each takes the request's body (already read and size-checked) and returns the stored record; each commits in its
own transaction with its events (service/store). Rendering and HTTP details stay in the callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.domain import groups as group_domain
from service.domain import users as user_domain
from service.domain.groups import GroupRecord, MembershipDelta
from service.domain.patch import apply_patch
from service.domain.resource import normalize
from service.domain.schema import USER_TYPE
from service.domain.users import UserRecord
from service.store import groups as group_store
from service.store import users as user_store


@dataclass(frozen=True)
class Tenant:
    """Where a write goes: the pool and the tenant's id."""

    pool: Any
    id: str


async def create_user(tenant: Tenant, body: Any) -> UserRecord:
    resource = user_domain.prepare_new(normalize(body, USER_TYPE))
    return await user_store.create(tenant.pool, tenant.id, resource)


async def replace_user(tenant: Tenant, user_id: str, body: Any, if_match: str | None) -> UserRecord:
    resource = normalize(body, USER_TYPE)

    def replace(current: UserRecord) -> dict[str, Any]:
        return user_domain.prepare_replacement(current, resource)

    return await user_store.update(tenant.pool, tenant.id, user_id, replace, if_match)


async def patch_user(tenant: Tenant, user_id: str, body: Any, if_match: str | None) -> UserRecord:
    def patch(current: UserRecord) -> dict[str, Any]:
        # An explicit `remove active` is honoured: a user without `active` is active (domain/users.py).
        return user_domain.validate(apply_patch(current.resource, body, USER_TYPE))

    return await user_store.update(tenant.pool, tenant.id, user_id, patch, if_match)


async def delete_user(tenant: Tenant, user_id: str, if_match: str | None) -> None:
    await user_store.delete(tenant.pool, tenant.id, user_id, if_match)


async def create_group(tenant: Tenant, body: Any) -> GroupRecord:
    resource, members = group_domain.prepare(body)
    return await group_store.create(tenant.pool, tenant.id, resource, members or [])


async def replace_group(tenant: Tenant, group_id: str, body: Any, if_match: str | None) -> GroupRecord:
    """PUT: every attribute replaced; the member list too when `members` is in the body (absent: kept)."""
    resource, members = group_domain.prepare(body)
    delta = MembershipDelta() if members is None else MembershipDelta(reset=True, adds=tuple(members))

    def replace(current: GroupRecord) -> tuple[dict[str, Any], MembershipDelta]:
        return resource, delta

    return await group_store.update(tenant.pool, tenant.id, group_id, replace, if_match)


async def patch_group(tenant: Tenant, group_id: str, body: Any, if_match: str | None) -> GroupRecord:
    def patch(current: GroupRecord) -> tuple[dict[str, Any], MembershipDelta]:
        return group_domain.plan_patch(current.resource, body)

    return await group_store.update(tenant.pool, tenant.id, group_id, patch, if_match)


async def delete_group(tenant: Tenant, group_id: str, if_match: str | None) -> None:
    await group_store.delete(tenant.pool, tenant.id, group_id, if_match)
