"""Running the API under uvicorn, with a clean exit status.

uvicorn answers SIGTERM gracefully (stops accepting, answers the requests it has read, within
`timeout_graceful_shutdown`, then runs the lifespan shutdown: audit flushed, pool closed) and then re-raises the
signal, so the process dies of it (exit status 143). A stop we asked for is a clean one: exit 0, like the relay
and the consumers, so supervisors and rolling restarts don't count it as a crash.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import Any

import uvicorn

GRACEFUL_SECONDS = 10  # in-flight requests get this long after SIGTERM; Kubernetes' grace period covers it


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()  # handled, gracefully: don't re-raise it on the way out


def run(app: Any, host: str, port: int, workers: int, keep_alive_seconds: int) -> None:
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": "httptools",
        "log_level": "warning",
        "access_log": False,
        "timeout_graceful_shutdown": GRACEFUL_SECONDS,
        "timeout_keep_alive": keep_alive_seconds,
    }
    if workers > 1:  # uvicorn's supervisor; each worker process builds its app from the env (an import string)
        uvicorn.run("service.api.app:app_from_env", factory=True, workers=workers, **options)
        return
    _Server(uvicorn.Config(app, **options)).run()
