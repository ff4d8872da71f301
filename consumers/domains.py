"""The domains this repo runs, by name."""

from __future__ import annotations

from consumers.booking.handlers import DOMAIN as BOOKING
from consumers.runtime.domain import Domain
from consumers.workspace.handlers import DOMAIN as WORKSPACE

DOMAINS: dict[str, Domain] = {BOOKING.name: BOOKING, WORKSPACE.name: WORKSPACE}
