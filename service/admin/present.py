"""Pure presentation helpers for the console's pages: which identity provider called, times, durations."""

from __future__ import annotations

from datetime import UTC, datetime


def identity_provider(user_agent: str | None) -> str:
    """A guess from the User-Agent: Okta says "Okta SCIM Client"; Entra's provisioning service says
    "Microsoft.Identity.Provisioning" (older ones "Azure AD" or "AAD")."""
    agent = (user_agent or "").lower()
    if "okta" in agent:
        return "Okta"
    if any(mark in agent for mark in ("microsoft", "azure", "aad", "entra")):
        return "Microsoft Entra ID"
    return "Other" if agent else "Unknown"


def when(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds(value: float) -> str:
    """0.4 s, 12 s, 3 min, 2 h: short and readable."""
    if value < 10:
        return f"{value:.1f} s"
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.0f} h"


def ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    return f"{seconds(max(0.0, (now - moment).total_seconds()))} ago"
