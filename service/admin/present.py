"""Pure presentation helpers for the console's pages: which identity provider called, times, durations."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode


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


def showing(start: int, shown: int, total: int, total_capped: bool, cap: int) -> str:
    """The range shown, "51-100 of 5,000" (with an en dash). Counts stop at `cap`: "of more than 10,000", and
    deeper than `cap` rows "50 past the first 10,000 of ..." (a keyset page knows its rank only by counting)."""
    of = f"of more than {cap:,}" if total_capped else f"of {total:,}"
    if start >= cap:
        return f"{shown:,} past the first {cap:,} {of}"
    return f"{start + 1:,}\u2013{start + shown:,} {of}"


def page_link(filters: dict[str, str], direction: str, row_id: str) -> str:
    """The query string of the next or previous page: the filters that are set, then after= or before=."""
    kept = {name: value for name, value in filters.items() if value}
    return "?" + urlencode({**kept, direction: row_id})
