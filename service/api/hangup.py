"""Hanging up on a client at once, for a response that must not wait for it any longer (a stalled reader).

ASGI has no message for "drop this connection": a server closes the connection after an unfinished response, but
gracefully, after its write buffer drains, which a client that never reads never lets happen. uvicorn's `send` is
a method of its request cycle, which holds the connection's transport: `offer` puts a `hang_up` for it in the scope
(under `KEY`), which resets the connection (RST, nothing more is sent, the socket is freed now). Under another
server, or in tests without one, there is none and the caller makes do without.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Callable
from typing import Any

from starlette.types import Scope, Send

KEY = "scimsync.hang_up"


def offer(scope: Scope, send: Send) -> None:
    """Call with the server's own `send`, before any middleware wraps it."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None and callable(getattr(transport, "abort", None)):
        scope[KEY] = lambda: _reset(transport)


def hang_up_of(scope: Scope) -> Callable[[], None] | None:
    hang_up: Callable[[], None] | None = scope.get(KEY)
    return hang_up


def _reset(transport: Any) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError, ValueError):  # linger 0: close sends RST, drops the buffer
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
