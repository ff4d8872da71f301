"""Resource versions (RFC 7644 §3.14): weak ETags, If-Match, and the timestamps of `meta`."""

from __future__ import annotations

from datetime import datetime

from service.domain.errors import PreconditionFailed


def etag(version: int) -> str:
    return f'W/"{version}"'


def check_version(version: int, if_match: str | None) -> None:
    """If-Match naming another version → 412. `*` matches any version; strong and weak tags both match."""
    if if_match is None:
        return
    wanted = [tag.strip() for tag in if_match.split(",")]
    if "*" in wanted or etag(version) in wanted or f'"{version}"' in wanted:
        return
    raise PreconditionFailed(f"version {etag(version)} does not match If-Match {if_match}")


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, as SCIM clients expect in `meta.created` / `meta.lastModified`."""
    return moment.isoformat().replace("+00:00", "Z")


def meta(resource_type: str, location: str, created: datetime, last_modified: datetime, version: int) -> dict[str, str]:
    """A resource's `meta` (RFC 7643 §3.1), with the version as its weak ETag."""
    return {
        "resourceType": resource_type,
        "created": iso(created),
        "lastModified": iso(last_modified),
        "location": location,
        "version": etag(version),
    }
