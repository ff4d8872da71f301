"""The peer of the comparisons: scim2-server 0.8.3 (in-memory storage, ASGI) served by uvicorn, as a new user would.

    .venv/bin/python -m uvicorn bench.peer:app --port 8000 --log-level warning

Its default schemas, resource types and service provider configuration; it accepts every request (no token
check, which only flatters it). Paths are `/v2/Users`, `/v2/Groups`.
"""

from __future__ import annotations

from scim2_models import ScimProvider
from scim2_server.applications.asgi import ASGIApplication
from scim2_server.memory import AsyncInMemoryStorage, InMemoryStorage
from scim2_server.utils import load_default_resource_types, load_default_schemas, load_default_service_provider_config

_provider = ScimProvider.from_discovery(
    load_default_schemas().values(),
    load_default_resource_types().values(),
    config=load_default_service_provider_config(),
)
app = ASGIApplication(AsyncInMemoryStorage(InMemoryStorage()), _provider)
