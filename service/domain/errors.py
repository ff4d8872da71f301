"""SCIM errors (RFC 7644 §3.12): one class per status or `scimType`, rendered in one place (api/errors.py)."""

from __future__ import annotations


class ScimError(Exception):
    """Base of every error a SCIM client may see. `status` is the HTTP status, `scim_type` the RFC keyword."""

    status: int = 400
    scim_type: str | None = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


# 400 with a scimType (RFC 7644 table 9)
class InvalidFilter(ScimError):
    scim_type = "invalidFilter"


class TooMany(ScimError):
    scim_type = "tooMany"


class InvalidSyntax(ScimError):
    scim_type = "invalidSyntax"


class InvalidPath(ScimError):
    scim_type = "invalidPath"


class NoTarget(ScimError):
    scim_type = "noTarget"


class InvalidValue(ScimError):
    scim_type = "invalidValue"


class InvalidVersion(ScimError):
    scim_type = "invalidVersion"


class Mutability(ScimError):
    scim_type = "mutability"


class Sensitive(ScimError):
    scim_type = "sensitive"


class Uniqueness(ScimError):
    status = 409
    scim_type = "uniqueness"


# Statuses without a scimType
class Unauthorized(ScimError):
    status = 401


class Forbidden(ScimError):
    status = 403


class NotFound(ScimError):
    status = 404


class MethodNotAllowed(ScimError):
    status = 405


class Conflict(ScimError):
    """409 without a scimType: e.g. a circular or failed `bulkId` reference in a Bulk request (RFC 7644 §3.7.1)."""

    status = 409


class PreconditionFailed(ScimError):
    status = 412


class PayloadTooLarge(ScimError):
    status = 413


class UnsupportedMediaType(ScimError):
    status = 415


class Contended(ScimError):
    """Postgres rolled a write back to end a deadlock or serialization failure with a concurrent one: sent again,
    it goes through. A request's answer carries Retry-After (api/errors.py); a Bulk operation's result this status."""

    status = 503


class NotImplementedFeature(ScimError):
    status = 501
