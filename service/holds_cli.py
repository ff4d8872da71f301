"""`scimsync holds ...`: what the deprovisioning brake holds, its policy per tenant, and letting held users go.

scimsync holds list [--tenant ID]                 who is held, since when (exit 1 when anything is held)
scimsync holds release TENANT [--user ID]         publish each held user's latest state, then kept team removals
scimsync holds policy TENANT [--minimum N] [--percent P] [--window-minutes M] [--on|--off]
"""

from __future__ import annotations

import argparse
import sys
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import orjson

from service.domain.errors import InvalidValue
from service.settings import Settings
from service.store import holds
from service.store.pool import connect


def _print(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a uuid: {text}") from None


async def cmd_holds(settings: Settings, args: argparse.Namespace) -> int:
    conn = await connect(settings.database_url)
    try:
        if args.action == "list":
            held = await holds.summary(conn, args.tenant)
            _print(held)
            return 1 if held else 0
        current = await holds.policy(conn, args.tenant)
        if current is None:
            sys.stderr.write(f"scimsync: no tenant {args.tenant}\n")
            return 1
        if args.action == "release":
            released = await holds.release(conn, args.tenant, args.user)
            _print(
                {
                    "tenant": str(args.tenant),
                    "released": released.users,
                    "superseded": released.superseded,
                    "team_removals": released.team_removals,
                }
            )
            return 0
        changes: dict[str, Any] = {
            k: v
            for k, v in (("minimum", args.minimum), ("percent", args.percent), ("enabled", args.enabled))
            if v is not None
        }
        if args.window_minutes is not None:
            changes["window"] = timedelta(minutes=args.window_minutes)
        if changes:
            try:
                current = replace(current, **changes)
            except InvalidValue as exc:
                sys.stderr.write(f"scimsync: {exc}\n")
                return 2
            await holds.set_policy(conn, args.tenant, current)
        _print(
            {
                "tenant": str(args.tenant),
                "enabled": current.enabled,
                "minimum": current.minimum,
                "percent": current.percent,
                "window_minutes": current.window.total_seconds() / 60,
            }
        )
        return 0
    finally:
        await conn.close()


def add_commands(sub: Any) -> None:
    hold = sub.add_parser("holds", help="the deprovisioning brake: held deprovisionings, release, policy")
    actions = hold.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="held users per tenant; exit 1 when anything is held")
    listing.add_argument("--tenant", type=_uuid)
    release = actions.add_parser("release", help="publish each held user's latest state (all, or --user)")
    release.add_argument("tenant", type=_uuid)
    release.add_argument("--user", type=_uuid, help="only this user")
    policy = actions.add_parser("policy", help="show or set a tenant's brake (defaults: 50, 20%%, 60 minutes)")
    policy.add_argument("tenant", type=_uuid)
    policy.add_argument("--minimum", type=int, help="never hold at or below this many deprovisionings")
    policy.add_argument("--percent", type=int, help="hold past this share of the tenant's active users")
    policy.add_argument("--window-minutes", type=float, help="the sliding window")
    switch = policy.add_mutually_exclusive_group()
    switch.add_argument("--on", dest="enabled", action="store_const", const=True)
    switch.add_argument("--off", dest="enabled", action="store_const", const=False)
    hold.set_defaults(run=cmd_holds, is_async=True)
