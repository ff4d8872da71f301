"""Text Postgres can store: which decoded JSON strings are refused at the edge, before anything reads them.

Postgres refuses NUL in `text` and `jsonb`, and UTF-8 has no encoding for a lone surrogate (JSON can spell
both as `\\u0000` and `\\ud800`). Left in, they fail deep in a database call as a 500; refused here they
are a 400 that says what is wrong. The request body parser (api/body.py) and the filter parser
(domain/filter.py) call this; nothing else needs to.
"""

from __future__ import annotations

import re
from typing import Any

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """Why `text` can't be stored, or None when it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    return "a NUL character (\\u0000)" if found.group() == "\x00" else "a lone surrogate (\\ud800-\\udfff)"


def first_unstorable(value: Any) -> str | None:
    """Why some string (object key or value) anywhere in decoded JSON can't be stored, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            why = unstorable(item)
            if why is not None:
                return why
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None
