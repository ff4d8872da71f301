"""The consumers' commands: `consume booking|workspace`, `rebuild booking|workspace` and
`booking desks|add-desk|book|list`.

`service/cli.py` mounts them with `add_commands(sub)`; each command reads its own settings (consumers don't
import `service`) and is run as `args.run(args) -> exit code`. `python -m consumers booking` also works.
The heavy imports (aiokafka, jsonschema) wait until a command runs, so mounting costs other commands nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import uvloop

from consumers.runtime.settings import ConsumerSettings, SettingsError

DOMAIN_NAMES = ("booking", "workspace")  # consumers.domains.DOMAINS, without importing every domain here


def add_commands(subparsers: Any) -> None:
    """Register the consumers' commands on an argparse subparsers object."""
    consume = subparsers.add_parser("consume", help="run a domain's event consumer (booking | workspace)")
    consume.add_argument("domain", choices=DOMAIN_NAMES)
    consume.set_defaults(run=run_consume, is_async=False, standalone=True)

    rebuild = subparsers.add_parser(
        "rebuild",
        help="rebuild a domain's projection from its topics (clear it, re-consume from the earliest offsets)",
        description="Clear the domain's projection, reset its consumer group's offsets to the earliest (or to "
        "--since) and consume up to the current end. Refuses while the group has active members. Exit code 0 = "
        "done, 1 = refused, 2 = could not (Kafka or Postgres unavailable).",
    )
    rebuild.add_argument("domain", choices=DOMAIN_NAMES)
    rebuild.add_argument(
        "--since",
        type=_moment,
        help="start at the first event at or after this time (ISO 8601; Kafka timestamps are milliseconds), not the "
        "earliest",
    )
    rebuild.add_argument("--force", action="store_true", help="rebuild even while the group has active members")
    rebuild.set_defaults(run=run_rebuild, is_async=False, standalone=True)

    booking = subparsers.add_parser("booking", help="desks and bookings (the booking domain)")
    actions = booking.add_subparsers(dest="booking_action", required=True)
    desks = actions.add_parser("desks", help="list a tenant's desks")
    desks.add_argument("--tenant", required=True)
    add_desk = actions.add_parser("add-desk", help="add a desk")
    add_desk.add_argument("--tenant", required=True)
    add_desk.add_argument("name")
    book = actions.add_parser("book", help="book a desk for a user")
    book.add_argument("--tenant", required=True)
    book.add_argument("--user", required=True, help="the SCIM user id")
    book.add_argument("--desk", required=True, help="the desk id")
    book.add_argument("--start", required=True, type=_moment, help="ISO 8601, e.g. 2026-03-02T09:00:00+01:00")
    book.add_argument("--hours", type=float, default=8.0)
    listing = actions.add_parser("list", help="list bookings")
    listing.add_argument("--tenant", required=True)
    listing.add_argument("--user")
    for parser in (booking, desks, add_desk, book, listing):
        parser.set_defaults(run=run_booking, is_async=False, standalone=True)


def _moment(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _settings() -> ConsumerSettings | None:
    try:
        return ConsumerSettings.from_env()
    except SettingsError as exc:
        sys.stderr.write(f"scimsync: {exc}\n")
        return None


def run_consume(args: argparse.Namespace) -> int:
    from consumers.domains import DOMAINS
    from consumers.runtime import logs, tracing
    from consumers.runtime.process import run_until_signalled

    settings = _settings()
    if settings is None:
        return 2
    logs.configure(settings.log_level, fmt=settings.log_format)
    tracing.setup(f"scimsync-consumer-{args.domain}")  # off without an OTLP endpoint
    try:
        return uvloop.run(run_until_signalled(DOMAINS[args.domain], settings))  # less CPU per event than asyncio's
    except (OSError, asyncpg.PostgresError) as exc:
        sys.stderr.write(f"scimsync: the {args.domain} consumer stopped ({type(exc).__name__}: {exc})\n")
        return 2
    finally:
        tracing.shutdown()  # after SIGTERM's graceful stop too: the last spans are exported before exit


def run_rebuild(args: argparse.Namespace) -> int:
    from consumers.runtime import logs

    settings = _settings()
    if settings is None:
        return 2
    logs.configure(settings.log_level, stream=sys.stderr.buffer, fmt=settings.log_format)  # stdout: the summary
    return asyncio.run(rebuild_command(args.domain, settings, since=args.since, force=args.force))


async def rebuild_command(
    domain_name: str, settings: ConsumerSettings, *, since: datetime | None = None, force: bool = False
) -> int:
    """`scimsync rebuild`: the summary as JSON on stdout, refusals and warnings on stderr; the exit code."""
    from aiokafka.errors import KafkaError

    from consumers import rebuild
    from consumers.domains import DOMAINS
    from consumers.runtime.errors import TransientError

    def warn(message: str) -> None:
        sys.stderr.write(f"scimsync: warning: {message}\n")

    try:
        summary = await rebuild.rebuild(DOMAINS[domain_name], settings, since=since, force=force, warn=warn)
    except rebuild.Refused as exc:
        sys.stderr.write(f"scimsync: refusing to rebuild {domain_name}: {exc}\n")
        return 1
    except (KafkaError, OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, TransientError) as exc:
        sys.stderr.write(f"scimsync: cannot rebuild {domain_name} ({type(exc).__name__}: {exc})\n")
        return 2
    result = asdict(summary)
    if summary.kept:
        result["note"] = f"kept {', '.join(summary.kept)}: the {domain_name} domain's own data, not a projection"
    _print(result)
    return 0


def _print(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def run_booking(args: argparse.Namespace) -> int:
    from consumers.booking import service
    from consumers.domains import DOMAINS
    from consumers.runtime.database import apply_schema, connect

    settings = _settings()
    if settings is None:
        return 2
    commands: dict[str, Callable[[Any], Awaitable[Any]]] = {
        "desks": lambda conn: service.list_desks(conn, args.tenant),
        "add-desk": lambda conn: service.add_desk(conn, args.tenant, args.name),
        "book": lambda conn: service.book(
            conn, args.tenant, args.user, args.desk, args.start, args.start + timedelta(hours=args.hours)
        ),
        "list": lambda conn: service.list_bookings(conn, args.tenant, args.user),
    }

    async def work() -> int:
        conn = await connect(settings.database_url)
        try:
            await apply_schema(conn, DOMAINS["booking"].schema_sql)
            result = await commands[args.booking_action](conn)
        except service.BookingRefused as exc:
            _print({"refused": exc.reason, "message": str(exc)})
            return 1
        except asyncpg.DataError as exc:  # e.g. an id that isn't a UUID
            sys.stderr.write(f"scimsync: invalid value ({exc})\n")
            return 2
        finally:
            await conn.close()
        _print([asdict(r) for r in result] if isinstance(result, list) else asdict(result))
        return 0

    try:
        return asyncio.run(work())
    except (OSError, asyncpg.PostgresError) as exc:
        sys.stderr.write(f"scimsync: cannot use the database ({type(exc).__name__}: {exc})\n")
        return 2
