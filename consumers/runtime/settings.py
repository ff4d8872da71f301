"""The consumers' own settings: read once from the environment in each entry point.

Consumers don't import `service`, so they don't share its Settings; the variable names are the same where the
meaning is the same (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, SCIMSYNC_USER_TOPIC, SCIMSYNC_GROUP_TOPIC,
SCIMSYNC_TOPIC_PARTITIONS).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from consumers.runtime.kafka_security import KafkaSecurity, KafkaSecurityError

LOCAL_DATABASE_URL = "postgresql://scimsync:scimsync@127.0.0.1:55432/scimsync"
LOCAL_KAFKA = "127.0.0.1:59092"
DEFAULT_SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas" / "events"


class SettingsError(ValueError):
    """A setting that can't be used; the message names the variable."""


@dataclass(frozen=True)
class ConsumerSettings:
    database_url: str = LOCAL_DATABASE_URL
    kafka_bootstrap_servers: str = LOCAL_KAFKA
    user_topic: str = "user-lifecycle.v1"
    dlq_topic: str = ""  # empty: `<user_topic>.dlq`
    group_topic: str = "group-lifecycle.v1"
    group_dlq_topic: str = ""  # empty: `<group_topic>.dlq`
    topic_partitions: int = 6
    topic_replication: int = 1
    group_prefix: str = ""  # consumer group = prefix + domain name ("booking", "workspace")
    metrics_port: int = 0  # 0: no /metrics endpoint
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a pod, so Prometheus can scrape it
    kafka: KafkaSecurity = field(default_factory=KafkaSecurity)  # KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*
    log_format: str = "auto"  # auto: human-readable on a terminal, JSON lines otherwise
    log_level: str = "info"
    batch_size: int = 1000  # records per getmany() round, across partitions
    # The broker answers a fetch once it has fetch_min_bytes or fetch_max_wait_ms passed. Waiting a few ms for
    # a batch instead of answering each event alone cuts the CPU per event of the consumer, Postgres (one
    # transaction per batch) and Kafka (one offset commit per batch); it adds at most that wait to the latency.
    fetch_max_wait_ms: int = 20
    fetch_min_bytes: int = 64 * 1024
    max_attempts: int = 3  # a handler failing this many times sends the event to the DLQ
    retry_backoff_s: float = 0.2  # first retry delay; doubles per attempt
    # How soon the group notices a member that died without leaving (kill -9, lost host) and hands its partitions
    # to the others: about session_timeout + heartbeat. 6 s is the broker's lowest default
    # (group.min.session.timeout.ms); a consumer whose event loop stalls longer than that loses its partitions
    # (a rebalance, then re-delivered records the version gate skips). See README "The booking and workspace domains".
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    schemas_dir: Path = field(default=DEFAULT_SCHEMAS_DIR)
    schema_engine: str = "auto"  # auto | jsonschema | jsonschema-rs (see runtime/schemas.py)

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq_topic or f"{self.user_topic}.dlq"

    def topic(self, setting: str) -> str:
        """A stream's topic by its setting name (`user_topic`, `group_topic`)."""
        if setting == "user_topic":
            return self.user_topic
        if setting == "group_topic":
            return self.group_topic
        raise KeyError(setting)

    def dead_letter_topic_for(self, setting: str) -> str:
        if setting == "group_topic":
            return self.group_dlq_topic or f"{self.group_topic}.dlq"
        return self.dead_letter_topic if setting == "user_topic" else f"{self.topic(setting)}.dlq"

    def group_id(self, domain: str) -> str:
        return f"{self.group_prefix}{domain}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ConsumerSettings:
        env = os.environ if env is None else env
        settings = cls(
            database_url=env.get("DATABASE_URL", cls.database_url),
            kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", cls.kafka_bootstrap_servers),
            user_topic=env.get("SCIMSYNC_USER_TOPIC", cls.user_topic),
            dlq_topic=env.get("SCIMSYNC_USER_DLQ_TOPIC", cls.dlq_topic),
            group_topic=env.get("SCIMSYNC_GROUP_TOPIC", cls.group_topic),
            group_dlq_topic=env.get("SCIMSYNC_GROUP_DLQ_TOPIC", cls.group_dlq_topic),
            topic_partitions=_int(env, "SCIMSYNC_TOPIC_PARTITIONS", cls.topic_partitions, minimum=1),
            topic_replication=_int(env, "SCIMSYNC_TOPIC_REPLICATION", cls.topic_replication, minimum=1),
            group_prefix=env.get("SCIMSYNC_CONSUMER_GROUP_PREFIX", cls.group_prefix),
            metrics_port=_int(env, "SCIMSYNC_CONSUMER_METRICS_PORT", cls.metrics_port, minimum=0),
            metrics_host=env.get("SCIMSYNC_METRICS_HOST", cls.metrics_host),
            kafka=_kafka(env),
            log_format=env.get("SCIMSYNC_LOG_FORMAT", cls.log_format).lower(),
            log_level=env.get("SCIMSYNC_LOG_LEVEL", cls.log_level).lower(),
            batch_size=_int(env, "SCIMSYNC_CONSUMER_BATCH_SIZE", cls.batch_size, minimum=1),
            fetch_max_wait_ms=_int(env, "SCIMSYNC_CONSUMER_FETCH_MAX_WAIT_MS", cls.fetch_max_wait_ms, minimum=0),
            fetch_min_bytes=_int(env, "SCIMSYNC_CONSUMER_FETCH_MIN_BYTES", cls.fetch_min_bytes, minimum=1),
            max_attempts=_int(env, "SCIMSYNC_CONSUMER_MAX_ATTEMPTS", cls.max_attempts, minimum=1),
            retry_backoff_s=_int(env, "SCIMSYNC_CONSUMER_RETRY_BACKOFF_MS", 200, minimum=0) / 1000,
            session_timeout_ms=_int(env, "SCIMSYNC_CONSUMER_SESSION_TIMEOUT_MS", cls.session_timeout_ms, minimum=1000),
            heartbeat_interval_ms=_int(env, "SCIMSYNC_CONSUMER_HEARTBEAT_MS", cls.heartbeat_interval_ms, minimum=100),
            schemas_dir=Path(env.get("SCIMSYNC_SCHEMAS_DIR") or DEFAULT_SCHEMAS_DIR),
            schema_engine=env.get("SCIMSYNC_SCHEMA_ENGINE", cls.schema_engine),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        db = urlsplit(self.database_url)
        if db.scheme not in ("postgresql", "postgres") or not db.hostname:
            raise SettingsError("DATABASE_URL must look like postgresql://user:pass@host:port/db")
        for server in self.kafka_bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise SettingsError(f"KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port], got {server!r}")
        if not self.user_topic:
            raise SettingsError("SCIMSYNC_USER_TOPIC must not be empty")
        if not self.group_topic or self.group_topic == self.user_topic:
            raise SettingsError("SCIMSYNC_GROUP_TOPIC must be set and differ from SCIMSYNC_USER_TOPIC")
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise SettingsError(
                "SCIMSYNC_CONSUMER_HEARTBEAT_MS must be at most a third of SCIMSYNC_CONSUMER_SESSION_TIMEOUT_MS"
            )
        if self.metrics_port > 65535:
            raise SettingsError(f"SCIMSYNC_CONSUMER_METRICS_PORT must be a port number, got {self.metrics_port}")
        if self.schema_engine not in ("auto", "jsonschema", "jsonschema-rs"):
            raise SettingsError(
                f"SCIMSYNC_SCHEMA_ENGINE must be auto|jsonschema|jsonschema-rs, got {self.schema_engine!r}"
            )
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise SettingsError(f"SCIMSYNC_LOG_LEVEL must be debug|info|warning|error, got {self.log_level!r}")
        if self.log_format not in ("auto", "json", "console"):
            raise SettingsError(f"SCIMSYNC_LOG_FORMAT must be auto|json|console, got {self.log_format!r}")


def _kafka(env: Mapping[str, str]) -> KafkaSecurity:
    try:
        return KafkaSecurity.from_env(env)
    except KafkaSecurityError as exc:
        raise SettingsError(str(exc)) from None


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
