"""Rendering: the Jinja2 templates (autoescaped) and the shared page context."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from service.admin import present
from service.settings import Settings

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["when"] = present.when
templates.env.filters["seconds"] = present.seconds
templates.env.globals["identity_provider"] = present.identity_provider


class Deps(Protocol):
    """What the console uses of the app's dependencies (filled in when the app starts)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def pool(self) -> Any: ...


def deps_of(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    grant = getattr(request.state, "grant", None)
    base = {
        "grant": grant,
        "csrf": getattr(request.state, "csrf", ""),
        "tenant_url": f"/admin/tenants/{grant.tenant_id}" if grant else "",
        "now": datetime.now(UTC),
        "ago": present.ago,
    }
    return templates.TemplateResponse(request, name, {**base, **context}, status_code=status)


def message(request: Request, status: int, title: str, text: str, **context: Any) -> Response:
    return render(request, "message.html", status, title=title, text=text, **context)
