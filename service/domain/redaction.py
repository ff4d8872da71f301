"""What the request log keeps of a refused SCIM request's body: enough to see why it was refused, never a secret.

Dropped wherever they appear: attributes named like a secret (`password`, anything with `token` or `secret`
in its name, case-insensitive, also as an Entra-style dotted key) and any string that looks like one of our
bearer tokens or like a bearer header. A body that is not JSON is summarised, not kept.
"""

from __future__ import annotations

import json
import re
from typing import Any

from service.domain.tenants import TOKEN_PREFIX

MAX_BODY_BYTES = 16_384
REDACTED = "[redacted]"
_SECRET_NAME = re.compile(r"pass(word|wd)|token|secret|credential|authorization|api[_-]?key", re.IGNORECASE)
_SECRET_VALUE = re.compile(rf"{re.escape(TOKEN_PREFIX)}|^bearer\s", re.IGNORECASE)


def redacted_body(raw: bytes) -> Any:
    """The parsed body with secrets replaced (for a jsonb column); None when there was no body."""
    if not raw.strip():
        return None
    if len(raw) > MAX_BODY_BYTES:
        return {"redacted": f"body of {len(raw)} bytes, too large to keep"}
    try:
        parsed = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {"redacted": f"body of {len(raw)} bytes, not JSON"}
    return _clean(parsed)


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        # A PATCH operation names its attribute in `path`: {"op": "replace", "path": "password", "value": "..."}
        secret_op = isinstance(value.get("path"), str) and bool(_SECRET_NAME.search(value["path"]))
        return {
            k: REDACTED if _SECRET_NAME.search(str(k)) or (secret_op and k == "value") else _clean(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and _SECRET_VALUE.search(value):
        return REDACTED
    return value
