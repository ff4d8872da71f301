"""`POST /Bulk` (RFC 7644 §3.7): runs each operation through the same writes as the `/Users` and `/Groups` endpoints.

Each operation is its own transaction with its own events: a failed operation changes nothing and the others still
apply (until `failOnErrors` errors). Limits (ServiceProviderConfig.bulk): `maxOperations` and `maxPayloadSize`,
both refused with 413 naming the two limits before anything runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import logs
from service.api import writes
from service.api.body import read_json
from service.api.errors import CONTENTION, error_body
from service.api.responses import ScimResponse
from service.domain import bulk
from service.domain.errors import Contended, PayloadTooLarge, ScimError
from service.domain.versions import etag
from service.store.pool import CONTENDED

log = logs.get(__name__)

_Write = Callable[..., Awaitable[Any]]
# (method, endpoint) → (the write, the success status the endpoint itself answers)
_WRITES: dict[tuple[str, str], tuple[_Write, int]] = {
    ("POST", "Users"): (writes.create_user, 201),
    ("PUT", "Users"): (writes.replace_user, 200),
    ("PATCH", "Users"): (writes.patch_user, 200),
    ("DELETE", "Users"): (writes.delete_user, 204),
    ("POST", "Groups"): (writes.create_group, 201),
    ("PUT", "Groups"): (writes.replace_group, 200),
    ("PATCH", "Groups"): (writes.patch_group, 204),  # like PATCH /Groups/{id}: no body to echo
    ("DELETE", "Groups"): (writes.delete_group, 204),
}


async def _read(request: Request) -> bulk.Request:
    settings = request.app.state.deps.settings
    limits = (settings.bulk_max_operations, settings.bulk_max_payload_bytes)
    try:
        body = await read_json(request, settings.bulk_max_payload_bytes)
    except PayloadTooLarge:
        raise PayloadTooLarge(
            f"The size of the bulk request exceeds the maxPayloadSize ({limits[1]} bytes); maxOperations is {limits[0]}"
        ) from None
    return bulk.read(body, *limits)


async def _run(
    tenant: writes.Tenant, op: bulk.Operation, ids: dict[str, str], failed: dict[str, str]
) -> tuple[int, str, int | None]:
    """Run one operation: (status, the resource's path, its version or None)."""
    if op.error is not None:
        raise op.error
    found = bulk.target(op.path)
    assert found is not None  # bulk.read checked the path
    endpoint, resource_id = found[0], bulk.resolve(found[1], ids, failed)
    data = bulk.resolve(op.data, ids, failed)
    write, status = _WRITES[(op.method, endpoint)]
    if op.method == "POST":
        record = await write(tenant, data)
    elif op.method == "DELETE":
        await write(tenant, resource_id, op.version)
        return status, f"/{endpoint}/{resource_id}", None
    else:
        record = await write(tenant, resource_id, data, op.version)
    return status, f"/{endpoint}/{record.id}", record.version


async def run_bulk(request: Request) -> Response:
    deps = request.app.state.deps
    tenant_id = str(request.scope["tenant"].id)
    base = deps.settings.scim_base_url(tenant_id)
    job = await _read(request)
    tenant = writes.Tenant(deps.pool, tenant_id)
    ids: dict[str, str] = {}  # bulkId → the id its POST created
    failed: dict[str, str] = {}  # bulkId → why its operation failed
    results: list[dict[str, Any]] = []
    errors = 0
    for op in bulk.plan(job.operations):
        result: dict[str, Any] = {"method": op.method}
        if op.bulk_id is not None:
            result["bulkId"] = op.bulk_id
        try:
            try:
                status, path, version = await _run(tenant, op, ids, failed)
            except CONTENDED as cause:  # this operation alone was rolled back; the others stand
                raise Contended(CONTENTION) from cause
        except ScimError as exc:
            errors += 1
            if op.bulk_id is not None:
                failed[op.bulk_id] = f"{exc.status}: {exc.detail}"
            if op.method != "POST" and op.path:
                result["location"] = f"{base}/{op.path.strip('/')}"
            result |= {"status": str(exc.status), "response": error_body(exc.status, exc.detail, exc.scim_type)}
        else:
            if op.method == "POST" and op.bulk_id is not None:
                ids[op.bulk_id] = path.rsplit("/", 1)[1]
            result["location"] = f"{base}{path}"
            if version is not None:
                result["version"] = etag(version)
            result["status"] = str(status)
        results.append(result)
        if job.fail_on_errors is not None and errors >= job.fail_on_errors:
            break
    log.info("bulk.ran", operations=len(job.operations), ran=len(results), errors=errors)
    return ScimResponse({"schemas": [bulk.BULK_RESPONSE], "Operations": results})


routes = [Route("/Bulk", run_bulk, methods=["POST"])]
