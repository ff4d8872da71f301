"""`scimsync ...`: every process and admin command. Settings are read once here, per invocation."""

from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import uvloop

from consumers.cli import add_commands as add_consumer_commands
from service import banner, logs
from service.holds_cli import add_commands as add_holds_commands
from service.settings import Settings, SettingsError
from service.store import access, migrator, outbox, tenants
from service.store.pool import connect


def _print(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _tenant_json(settings: Settings, tenant: Any, token: str | None = None) -> dict[str, Any]:
    out = {
        "id": tenant.id,
        "name": tenant.name,
        "enabled": tenant.enabled,
        "scim_base_url": settings.scim_base_url(tenant.id),
    }
    if token is not None:
        out["token"] = token
    return out


async def _with_conn(settings: Settings, work: Callable[[Any], Awaitable[int]]) -> int:
    conn = await connect(settings.database_url)
    try:
        return await work(conn)
    finally:
        await conn.close()


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    from service.api import server
    from service.api.app import create_app

    if args.workers > 1 and settings.metrics_port:
        sys.stderr.write("scimsync: SCIMSYNC_METRICS_PORT needs --workers 1 (scale with processes or pods)\n")
        return 2
    app = create_app(settings) if args.workers == 1 else None
    server.run(app, args.host, args.port, args.workers, settings.http_keep_alive_seconds)
    return 0


async def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: Any) -> int:
        if args.check:  # a Kubernetes init container: wait (fail, be retried) until the migration Job ran
            waiting = await migrator.pending(conn)
            _print({"pending": waiting})
            return 1 if waiting else 0
        applied = await migrator.migrate(conn)
        _print({"applied": applied})
        return 0

    return await _with_conn(settings, work)


async def cmd_tenants(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: Any) -> int:
        if args.action == "create":
            tenant, token = await tenants.create(conn, args.name)
            _print(_tenant_json(settings, tenant, token))
        elif args.action == "list":
            _print([_tenant_json(settings, t) for t in await tenants.list_all(conn)])
        elif args.action == "rate-limit":
            per_second, burst = (None, None) if args.default else (args.per_second, args.burst)
            if not await tenants.set_rate_limit(conn, args.id, per_second, burst):
                return _missing(args.id)
            limit = {"per_second": per_second, "burst": burst}  # null: SCIMSYNC_RATE_LIMIT_* of each API process
            _print({**_tenant_json(settings, await tenants.get(conn, args.id)), "rate_limit": limit})
        elif args.action == "rotate-token":
            rotated = await tenants.rotate_token(conn, args.id)
            if rotated is None:
                return _missing(args.id)
            await access.record_action(conn, args.id, "operator (CLI)", "token rotated (previous tokens stop at once)")
            _print({"id": args.id, "token": rotated})
        else:
            if not await tenants.set_enabled(conn, args.id, args.action == "enable"):
                return _missing(args.id)
            await access.record_action(conn, args.id, "operator (CLI)", f"provisioning {args.action}d")
            _print(_tenant_json(settings, await tenants.get(conn, args.id)))
        return 0

    return await _with_conn(settings, work)


async def cmd_admin_link(settings: Settings, args: argparse.Namespace) -> int:
    from service.admin.links import issue

    async def work(conn: Any) -> int:
        issued = await issue(conn, settings, args.tenant_id, args.minutes, args.label)
        if issued is None:
            return _missing(args.tenant_id)
        _print(issued)
        return 0

    return await _with_conn(settings, work)


async def cmd_demo_tenant(settings: Settings, args: argparse.Namespace) -> int:
    """Ensure the demo tenant of `make run` exists and print its base URL and token.

    The token is kept in a local file (it is stored hashed in Postgres); if the file is missing or stale
    the token is rotated, so the printed token always works.
    """
    token_file = Path(args.token_file)

    async def work(conn: Any) -> int:
        tenant = await tenants.find_by_name(conn, args.name)
        token = token_file.read_text().strip() if token_file.exists() else None
        if tenant is None:
            tenant, token = await tenants.create(conn, args.name)
        elif token is None or tenant.token_for(token, time.time()) is None:
            token = await tenants.rotate_token(conn, tenant.id)
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.write_text(str(token))
        token_file.chmod(0o600)
        if not args.banner:
            _print(_tenant_json(settings, tenant, token))
            return 0
        rows = [("SCIM Base URL", settings.scim_base_url(tenant.id)), ("Bearer token", str(token))]
        from service.admin.links import issue

        link = await issue(conn, settings, tenant.id, 60, "make run")
        if link is not None:  # one-time: opening it starts the admin's session and burns it
            rows.append(("Admin console", f"{link['url']}  (one-time link, 60 min)"))
        rows.append(("API", f"{settings.public_url}  (readiness: {settings.public_url}/readyz)"))
        notes = [
            'Paste the Base URL and the token into Okta or Entra (README "Connecting Okta").',
            "Ctrl-C stops every process; `make stack-down` stops Postgres and Kafka.",
            *args.note,
        ]
        sys.stdout.write("\n" + banner.box("scimsync is ready", rows, notes) + "\n")
        return 0

    return await _with_conn(settings, work)


async def cmd_relay(settings: Settings, args: argparse.Namespace) -> int:
    if args.action != "resend" and args.sequences:
        sys.stderr.write(f"scimsync: relay {args.action} takes no sequences\n")
        return 2
    if args.action == "status":
        return await cmd_relay_status(settings, args)
    if args.action == "parked":
        return await cmd_relay_parked(settings, args)
    if args.action == "resend":
        return await cmd_relay_resend(settings, args)
    from service.relay.relay import run

    return await run(settings, batch_size=args.batch_size, replication_factor=args.replication_factor)


async def cmd_relay_status(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: Any) -> int:
        lag = await outbox.lag(conn)
        _print(
            {
                "unpublished": lag.unpublished,
                "oldest_unpublished_age_seconds": round(lag.oldest_age_seconds, 3),
                "last_published_sequence": await outbox.last_published_sequence(conn),
                "parked": lag.parked,
                "held": lag.held,
            }
        )
        return 0

    return await _with_conn(settings, work)


async def cmd_relay_parked(settings: Settings, args: argparse.Namespace) -> int:
    """The events Kafka refused for good, oldest first, each with the later events of its stream waiting behind it."""

    async def work(conn: Any) -> int:
        parked = await outbox.gated(conn, outbox.PARKED, args.tenant)
        _print(
            [
                {
                    "sequence": g.sequence,
                    "tenant_id": g.tenant_id,
                    "aggregate": g.aggregate,
                    "subject": g.subject,
                    "type": g.type,
                    "version": g.version,
                    "reason": g.reason,
                    "since": g.since.isoformat() if g.since else None,
                    "waiting_behind": g.waiting,
                }
                for g in parked
            ]
        )
        return 0

    return await _with_conn(settings, work)


async def cmd_relay_resend(settings: Settings, args: argparse.Namespace) -> int:
    """Un-park events: the relay tries them again, in their stream's order. Refused again, they are parked again."""
    if bool(args.sequences) == args.all:
        sys.stderr.write("scimsync: relay resend takes SEQUENCE... or --all (with an optional --tenant)\n")
        return 2

    async def work(conn: Any) -> int:
        wanted = args.sequences or [g.sequence for g in await outbox.gated(conn, outbox.PARKED, args.tenant)]
        released = await outbox.release(conn, wanted, outbox.PARKED)
        await conn.execute("SELECT pg_notify($1, '')", outbox.CHANNEL)  # wake a sleeping relay now
        not_parked = sorted(set(wanted) - set(released))
        _print({"resent": sorted(released), "not_parked": not_parked})
        for sequence in not_parked:
            sys.stderr.write(f"scimsync: event {sequence} is not parked (unknown, published or already resent)\n")
        return 1 if not_parked else 0

    return await _with_conn(settings, work)


async def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from service.relay.publisher import KafkaUnavailable, RecordRefused
    from service.relay.replay import ReplayOptions, replay

    selection = outbox.Selection(
        tenant_id=args.tenant,
        subject=args.user or args.group,
        aggregate="user" if args.user else "group" if args.group else args.aggregate,
        from_sequence=args.from_sequence,
        to_sequence=args.to_sequence,
        since=args.since,
        until=args.until,
    )
    if args.topic and selection.aggregate is None:
        sys.stderr.write(
            "scimsync: --topic would mix user and group events in one topic (each has its own consumers and DLQ);"
            " add --aggregate user|group (or --user / --group), one replay per topic\n"
        )
        return 2
    options = ReplayOptions(selection, topic=args.topic, dry_run=args.dry_run, rate=args.rate)
    try:
        summary = await replay(settings, options)
    except (KafkaUnavailable, RecordRefused) as exc:
        sys.stderr.write(f"scimsync: replay stopped: {exc or type(exc).__name__}\n")
        return 2
    sys.stderr.write(orjson.dumps(summary).decode() + "\n")
    return 0


async def cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from service import reconcile
    from service.relay.publisher import KafkaUnavailable, RecordRefused

    # The one line below says it when Kafka is unreachable; aiokafka's own error lines would only repeat it.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    async def work(conn: Any) -> int:
        try:
            report = await reconcile.check(conn, args.tenant)
        except asyncpg.UndefinedTableError as exc:
            sys.stderr.write(f"scimsync: a projection is missing ({exc}); have the consumers started once?\n")
            return 2
        if args.fix and report.drifted:
            try:
                await reconcile.repair(conn, settings, report)
            except KafkaUnavailable as exc:  # 2 = could not check or fix; 1 would claim "drift, repairs sent"
                sys.stderr.write(f"scimsync: drift found but Kafka is unreachable, no repair was sent ({exc})\n")
                return 2
            except RecordRefused as exc:  # e.g. a topic limit below the event's size: the rest of the repair waits
                sys.stderr.write(f"scimsync: drift found but the repair stopped: {exc}\n")
                return 2
        summary, meanings = report.summary(), reconcile.meanings()
        _print(summary)
        for name, count in summary["found"].items():
            if count:
                sys.stderr.write(f"drift: {count} x {name}: {meanings[name]}\n")
        return 1 if report.drifted else 0

    return await _with_conn(settings, work)


def _missing(tenant_id: str) -> int:
    sys.stderr.write(f"scimsync: no tenant {tenant_id}\n")
    return 1


def _uuid(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a uuid: {text}") from None


def _minutes(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 7 * 24 * 60:
        raise argparse.ArgumentTypeError(f"minutes must be a whole number from 1 to 10080, got {text}")
    return int(text)


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text}")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1: {text}")
    return int(text)


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="scimsync", description="SCIM 2.0 provisioning service")
    sub = root.add_subparsers(dest="command", required=True)

    api = sub.add_parser("api", help="serve the SCIM API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1, help="processes serving the API (default 1)")
    api.set_defaults(run=cmd_api, is_async=False)

    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.add_argument("--check", action="store_true", help="apply nothing; exit 1 while migrations are pending")
    mig.set_defaults(run=cmd_migrate, is_async=True)

    ten = sub.add_parser("tenants", help="manage tenants (Admin > User provisioning)")
    ten_sub = ten.add_subparsers(dest="action", required=True)
    ten_sub.add_parser("create", help="create a tenant; prints its token once").add_argument("name")
    ten_sub.add_parser("list", help="list tenants")
    for action in ("rotate-token", "enable", "disable"):
        ten_sub.add_parser(action).add_argument("id")
    limit = ten_sub.add_parser("rate-limit", help="the tenant's own request rate limit (per API process)")
    limit.add_argument("id")
    limit.add_argument("--per-second", type=_non_negative, help="sustained requests per second (0: no limit)")
    limit.add_argument("--burst", type=_positive_int, help="requests allowed at once above the sustained rate")
    limit.add_argument("--default", action="store_true", help="back to SCIMSYNC_RATE_LIMIT_PER_SECOND / _BURST")
    ten.set_defaults(run=cmd_tenants, is_async=True)

    link = sub.add_parser("admin-link", help="a one-time setup link to the admin console of one tenant")
    link.add_argument("tenant_id", type=_uuid)
    link.add_argument("--minutes", type=_minutes, default=15, help="how long the link can be opened (default 15)")
    link.add_argument("--label", default="setup link", help="who it is for; shown as 'who' in the activity log")
    link.set_defaults(run=cmd_admin_link, is_async=True)

    rep = sub.add_parser("replay", help="re-publish a range of the event log to Kafka (same ids and versions)")
    rep.add_argument("--tenant", type=_uuid, help="only this tenant's events")
    who = rep.add_mutually_exclusive_group()
    who.add_argument("--user", type=_uuid, help="only this user's events")
    who.add_argument("--group", type=_uuid, help="only this group's events")
    rep.add_argument("--aggregate", choices=["user", "group"], help="only user or only group events")
    rep.add_argument("--from-sequence", type=int, help="from this sequence (inclusive)")
    rep.add_argument("--to-sequence", type=int, help="up to this sequence (inclusive)")
    rep.add_argument("--since", type=_moment, help="events at or after this time (ISO 8601)")
    rep.add_argument("--until", type=_moment, help="events before this time (ISO 8601)")
    rep.add_argument(
        "--topic", help="publish to this topic instead of each event's own (needs --aggregate, --user or --group)"
    )
    rep.add_argument("--rate", type=float, help="at most this many events per second")
    rep.add_argument("--dry-run", action="store_true", help="print what would be sent, send nothing")
    rep.set_defaults(run=cmd_replay, is_async=True)

    rec = sub.add_parser("reconcile", help="compare the projections with the users table; exit 1 on drift")
    rec.add_argument("--tenant", type=_uuid, help="only this tenant")
    rec.add_argument("--fix", action="store_true", help="re-publish the latest event of each drifted user")
    rec.set_defaults(run=cmd_reconcile, is_async=True)

    demo = sub.add_parser("demo-tenant", help="ensure the local demo tenant exists; print its URL and token")
    demo.add_argument("--name", default="demo")
    demo.add_argument("--token-file", default="deploy/local/.state/demo-token")
    demo.add_argument("--banner", action="store_true", help="print a box for a person instead of JSON")
    demo.add_argument("--note", action="append", default=[], help="a line to add to the box")
    demo.set_defaults(run=cmd_demo_tenant, is_async=True)

    relay = sub.add_parser(
        "relay",
        help="publish the event log to Kafka (`status`: how far behind; `parked`: events Kafka refused for good;"
        " `resend SEQUENCE...`: try parked events again)",
    )
    relay.add_argument("action", nargs="?", choices=["run", "status", "parked", "resend"], default="run")
    relay.add_argument("sequences", nargs="*", type=int, metavar="SEQUENCE", help="resend: the parked events")
    relay.add_argument("--tenant", type=_uuid, help="parked / resend --all: only this tenant's events")
    relay.add_argument("--all", action="store_true", help="resend: every parked event (of --tenant)")
    relay.add_argument("--batch-size", type=int, default=500, help="events per Kafka batch (default 500)")
    relay.add_argument("--replication-factor", type=int, default=1, help="for the topic, if the relay creates it")
    relay.set_defaults(run=cmd_relay, is_async=True)

    add_holds_commands(sub)
    # The consumers' commands (`consume`, `booking`) read their own settings: consumers don't import service.
    add_consumer_commands(sub)
    return root


def _log_stream(args: argparse.Namespace) -> Any:
    """The processes that serve (api, relay) log to stdout, which their container collects; every other command
    prints its result on stdout, so it logs to stderr and stdout carries the result alone."""
    serving = args.command == "api" or (args.command == "relay" and getattr(args, "action", "run") == "run")
    return sys.stdout if serving else sys.stderr


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "standalone", False):
        return int(args.run(args))
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.stderr.write(f"scimsync: {exc}\n")
        return 2
    logs.configure(settings.log_level, stream=_log_stream(args), fmt=settings.log_format)
    traced = _traced_as(args)
    if traced is not None:
        from service import tracing  # imported only by the commands that trace: the others start faster

        tracing.setup(traced)  # off without an OTLP endpoint (service/tracing.py)
    try:
        if args.is_async:
            result: int = uvloop.run(args.run(settings, args))  # the API's loop too: less CPU per event in the relay
            return result
        return int(args.run(settings, args))
    except (OSError, asyncpg.PostgresError) as exc:
        sys.stderr.write(f"scimsync: cannot use the database ({type(exc).__name__}: {exc})\n")
        return 2
    finally:
        if traced is not None:
            tracing.shutdown()  # after SIGTERM's graceful stop too: the last spans are exported before exit


def _traced_as(args: argparse.Namespace) -> str | None:
    """The default service name of the commands that publish events (the API sets up tracing in its app)."""
    if args.command == "relay" and getattr(args, "action", "run") == "run":
        return "scimsync-relay"
    if args.command == "replay" and not args.dry_run:
        return "scimsync-replay"
    if args.command == "reconcile" and getattr(args, "fix", False):
        return "scimsync-reconcile"
    return None


if __name__ == "__main__":
    sys.exit(main())
