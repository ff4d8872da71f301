"""Settings from the environment: one frozen object, read once in each entry point.

Defaults point at the local stack (`deploy/local/stack up`), so `make run` needs no configuration.
A bad value stops the process at start-up with a message that names the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from consumers.runtime.kafka_security import KafkaSecurity, KafkaSecurityError

LOCAL_DATABASE_URL = "postgresql://scimsync:scimsync@127.0.0.1:55432/scimsync"
LOCAL_KAFKA = "127.0.0.1:59092"


class SettingsError(ValueError):
    """A setting that can't be used; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    database_url: str = LOCAL_DATABASE_URL
    kafka_bootstrap_servers: str = LOCAL_KAFKA
    public_url: str = "http://127.0.0.1:8000"
    log_level: str = "info"
    db_pool_min: int = 2
    db_pool_max: int = 20
    max_body_bytes: int = 1_048_576
    max_page_size: int = 1000
    user_topic: str = "user-lifecycle.v1"
    group_topic: str = "group-lifecycle.v1"
    topic_partitions: int = 6
    bulk_max_operations: int = 1000
    bulk_max_payload_bytes: int = 1_048_576
    # The admin console's operator API key (POST /admin/api/...); unset: that API answers 404. Never in a repr.
    operator_key: str | None = field(default=None, repr=False)
    admin_idle_minutes: int = 30
    relay_lease_seconds: int = 10  # a vanished relay leader loses the lock after this (service/relay/lease.py)
    audit_retention_days: int = 30
    audit_max_pending: int = 100_000
    kafka: KafkaSecurity = field(default_factory=KafkaSecurity)  # KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*
    log_format: str = "auto"  # auto: human-readable on a terminal, JSON lines otherwise
    metrics_port: int = 0  # 0: /metrics on the API's own port; else only on this port
    metrics_host: str = "127.0.0.1"
    metrics_token: str = ""  # set: /metrics wants `Authorization: Bearer <token>`
    metrics_tenant_label: bool = False  # opt-in: latency by tenant too (one series set per tenant)
    metrics_refresh_seconds: float = 5.0  # how often the API refreshes its gauges from Postgres and Kafka
    rate_limit_per_second: float = 100.0  # per tenant and API process; 0 switches the limit off
    rate_limit_burst: int = 200
    rate_limit_hold_seconds: float = 1.0  # a 429 is answered after this long (at most its Retry-After)
    tenant_concurrency: int = 8  # a tenant's requests in flight per API process; more wait their turn
    # A streamed response (a big group) whose client takes longer than this to accept a chunk is cut off: its
    # database connection must not wait for a reader that stopped reading.
    stream_write_timeout_seconds: float = 30.0
    # How long an idle keep-alive connection stays open. Longer than the idle timeout of the load balancer or
    # ingress in front (60 s is the usual one): a server that closes first races the proxy's next request (a 502).
    http_keep_alive_seconds: int = 75

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        settings = cls(
            database_url=env.get("DATABASE_URL", cls.database_url),
            kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", cls.kafka_bootstrap_servers),
            public_url=env.get("SCIMSYNC_PUBLIC_URL", cls.public_url).rstrip("/"),
            log_level=env.get("SCIMSYNC_LOG_LEVEL", cls.log_level).lower(),
            db_pool_min=_int(env, "SCIMSYNC_DB_POOL_MIN", cls.db_pool_min, minimum=0),
            db_pool_max=_int(env, "SCIMSYNC_DB_POOL_MAX", cls.db_pool_max, minimum=1),
            http_keep_alive_seconds=_int(
                env, "SCIMSYNC_HTTP_KEEP_ALIVE_SECONDS", cls.http_keep_alive_seconds, minimum=1
            ),
            max_body_bytes=_int(env, "SCIMSYNC_MAX_BODY_BYTES", cls.max_body_bytes, minimum=1024),
            max_page_size=_int(env, "SCIMSYNC_MAX_PAGE_SIZE", cls.max_page_size, minimum=1),
            user_topic=env.get("SCIMSYNC_USER_TOPIC", cls.user_topic),
            group_topic=env.get("SCIMSYNC_GROUP_TOPIC", cls.group_topic),
            topic_partitions=_int(env, "SCIMSYNC_TOPIC_PARTITIONS", cls.topic_partitions, minimum=1),
            bulk_max_operations=_int(env, "SCIMSYNC_BULK_MAX_OPERATIONS", cls.bulk_max_operations, minimum=1),
            bulk_max_payload_bytes=_int(
                env, "SCIMSYNC_BULK_MAX_PAYLOAD_BYTES", cls.bulk_max_payload_bytes, minimum=1024
            ),
            operator_key=env.get("SCIMSYNC_OPERATOR_KEY") or None,
            admin_idle_minutes=_int(env, "SCIMSYNC_ADMIN_IDLE_MINUTES", cls.admin_idle_minutes, minimum=1),
            relay_lease_seconds=_int(env, "SCIMSYNC_RELAY_LEASE_SECONDS", cls.relay_lease_seconds, minimum=2),
            audit_retention_days=_int(env, "SCIMSYNC_AUDIT_RETENTION_DAYS", cls.audit_retention_days, minimum=1),
            audit_max_pending=_int(env, "SCIMSYNC_AUDIT_MAX_PENDING", cls.audit_max_pending, minimum=1),
            kafka=_kafka(env),
            log_format=env.get("SCIMSYNC_LOG_FORMAT", cls.log_format).lower(),
            metrics_port=_int(env, "SCIMSYNC_METRICS_PORT", cls.metrics_port, minimum=0),
            metrics_host=env.get("SCIMSYNC_METRICS_HOST", cls.metrics_host),
            metrics_token=env.get("SCIMSYNC_METRICS_TOKEN", cls.metrics_token),
            metrics_tenant_label=_bool(env, "SCIMSYNC_METRICS_TENANT_LABEL", cls.metrics_tenant_label),
            metrics_refresh_seconds=_int(env, "SCIMSYNC_METRICS_REFRESH_MS", 5000, minimum=100) / 1000,
            rate_limit_per_second=_float(env, "SCIMSYNC_RATE_LIMIT_PER_SECOND", cls.rate_limit_per_second),
            rate_limit_burst=_int(env, "SCIMSYNC_RATE_LIMIT_BURST", cls.rate_limit_burst, minimum=1),
            rate_limit_hold_seconds=_int(env, "SCIMSYNC_RATE_LIMIT_HOLD_MS", 1000, minimum=0) / 1000,
            tenant_concurrency=_int(env, "SCIMSYNC_TENANT_CONCURRENCY", cls.tenant_concurrency, minimum=1),
            stream_write_timeout_seconds=_int(env, "SCIMSYNC_STREAM_WRITE_TIMEOUT_MS", 30_000, minimum=100) / 1000,
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        db = urlsplit(self.database_url)
        if db.scheme not in ("postgresql", "postgres") or not db.hostname:
            raise SettingsError(f"DATABASE_URL must look like postgresql://user:pass@host:port/db, got {_redact(self)}")
        for server in self.kafka_bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise SettingsError(f"KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port], got {server!r}")
        public = urlsplit(self.public_url)
        if public.scheme not in ("http", "https") or not public.netloc:
            raise SettingsError(f"SCIMSYNC_PUBLIC_URL must be an absolute http(s) URL, got {self.public_url!r}")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise SettingsError(f"SCIMSYNC_LOG_LEVEL must be debug|info|warning|error, got {self.log_level!r}")
        if self.operator_key is not None and len(self.operator_key) < 32:
            raise SettingsError("SCIMSYNC_OPERATOR_KEY must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        if self.log_format not in ("auto", "json", "console"):
            raise SettingsError(f"SCIMSYNC_LOG_FORMAT must be auto|json|console, got {self.log_format!r}")
        if self.metrics_port > 65535:
            raise SettingsError(f"SCIMSYNC_METRICS_PORT must be a port number, got {self.metrics_port}")
        if self.db_pool_min > self.db_pool_max:
            raise SettingsError("SCIMSYNC_DB_POOL_MIN must not exceed SCIMSYNC_DB_POOL_MAX")

    def topics(self) -> dict[str, str]:
        """The Kafka topic of each aggregate's events."""
        return {"user": self.user_topic, "group": self.group_topic}

    @property
    def https(self) -> bool:
        """Whether the service is reached over https: then the admin session cookie is `Secure`."""
        return self.public_url.startswith("https://")

    def scim_base_url(self, tenant_id: str) -> str:
        return f"{self.public_url}/scim/v2/{tenant_id}"


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not value >= 0:  # also refuses nan
        raise SettingsError(f"{name} must be >= 0, got {raw!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise SettingsError(f"{name} must be true or false, got {raw!r}")
    return raw in ("true", "1", "yes")


def _kafka(env: Mapping[str, str]) -> KafkaSecurity:
    try:
        return KafkaSecurity.from_env(env)
    except KafkaSecurityError as exc:
        raise SettingsError(str(exc)) from None


def _redact(settings: Settings) -> str:
    """The database URL without its password, for error messages."""
    parts = urlsplit(settings.database_url)
    if parts.password:
        return settings.database_url.replace(f":{parts.password}@", ":***@")
    return settings.database_url
