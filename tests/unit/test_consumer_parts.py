"""The consumer runtime's small parts: settings, snapshot reading, metrics text, dead-letter headers, CLI."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import pytest

from consumers.cli import DOMAIN_NAMES, add_commands
from consumers.domains import DOMAINS
from consumers.runtime import snapshot
from consumers.runtime.deadletter import dead_letter_headers
from consumers.runtime.domain import Domain
from consumers.runtime.metrics import Metrics
from consumers.runtime.settings import DEFAULT_SCHEMAS_DIR, ConsumerSettings, SettingsError


def test_settings_defaults_and_overrides() -> None:
    default = ConsumerSettings.from_env({})
    assert (default.user_topic, default.dead_letter_topic, default.topic_partitions) == (
        "user-lifecycle.v1",
        "user-lifecycle.v1.dlq",
        6,
    )
    assert (default.group_id("booking"), default.metrics_port, default.schemas_dir) == (
        "booking",
        0,
        DEFAULT_SCHEMAS_DIR,
    )
    custom = ConsumerSettings.from_env(
        {
            "SCIMSYNC_USER_TOPIC": "t",
            "SCIMSYNC_CONSUMER_GROUP_PREFIX": "t.",
            "SCIMSYNC_CONSUMER_METRICS_PORT": "9100",
            "SCIMSYNC_SCHEMAS_DIR": "/x",
            "SCIMSYNC_CONSUMER_RETRY_BACKOFF_MS": "50",
        }
    )
    assert (custom.dead_letter_topic, custom.group_id("workspace"), custom.metrics_port) == (
        "t.dlq",
        "t.workspace",
        9100,
    )
    assert (custom.schemas_dir, custom.retry_backoff_s) == (Path("/x"), 0.05)


@pytest.mark.parametrize(
    "env",
    [
        {"DATABASE_URL": "mysql://x"},
        {"KAFKA_BOOTSTRAP_SERVERS": "localhost"},
        {"SCIMSYNC_TOPIC_PARTITIONS": "0"},
        {"SCIMSYNC_CONSUMER_METRICS_PORT": "70000"},
        {"SCIMSYNC_CONSUMER_BATCH_SIZE": "many"},
        {"SCIMSYNC_SCHEMA_ENGINE": "fast"},
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as caught:
        ConsumerSettings.from_env(env)
    assert next(iter(env)) in str(caught.value)


def test_snapshot_attributes() -> None:
    data = {
        "userName": "ada@example.com",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": "home@example.com"}, {"value": "work@example.com", "primary": True}],
        snapshot.ENTERPRISE: {"department": "R&D"},
    }
    assert snapshot.email(data) == "work@example.com"
    assert snapshot.email({"emails": [{"value": ""}, {"value": "b@example.com"}]}) == "b@example.com"
    assert snapshot.email({}) is None
    assert snapshot.department(data) == "R&D" and snapshot.department({snapshot.ENTERPRISE: "x"}) is None
    assert snapshot.label(data) == "Ada Lovelace"
    assert snapshot.label({**data, "displayName": "Countess"}) == "Countess"
    assert snapshot.label({"userName": "u"}) == "u"


def test_metrics_text() -> None:
    metrics = Metrics(group="booking", topic="user-lifecycle.v1")
    metrics.add("applied", 3)
    metrics.add("skipped_duplicate")
    metrics.lag.update({0: 5, 1: 0})
    text = metrics.render()
    assert 'scimsync_consumer_applied_total{group="booking",topic="user-lifecycle.v1"} 3\n' in text
    assert "# TYPE scimsync_consumer_lag gauge\n" in text
    assert 'scimsync_consumer_lag{group="booking",topic="user-lifecycle.v1",partition="0"} 5\n' in text
    assert (metrics.handled, metrics.total_lag) == (4, 5)


def test_dead_letter_headers_keep_the_original_ones() -> None:
    record = SimpleNamespace(
        topic="user-lifecycle.v1",
        partition=2,
        offset=41,
        headers=[("ce_type", b"user.created"), ("dlq_error", b"from an earlier trip")],
    )
    headers = dead_letter_headers(record, "schema: x" * 500, "booking", 3)
    as_dict = dict(headers)
    assert headers[0] == ("ce_type", b"user.created")
    assert [k for k, _ in headers].count("dlq_error") == 1
    assert (as_dict["dlq_topic"], as_dict["dlq_partition"], as_dict["dlq_offset"]) == (
        b"user-lifecycle.v1",
        b"2",
        b"41",
    )
    assert (as_dict["dlq_group"], as_dict["dlq_attempts"], len(as_dict["dlq_error"])) == (b"booking", b"3", 2000)


def test_domain_versions_table_must_be_a_plain_name() -> None:
    with pytest.raises(ValueError, match="versions_table"):
        Domain(name="x", schema_sql=Path("x.sql"), versions_table="x; DROP TABLE y", handlers={})


def test_cli_commands_are_standalone() -> None:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command", required=True))
    consume = parser.parse_args(["consume", "workspace"])
    assert (consume.domain, consume.standalone, consume.is_async, callable(consume.run)) == (
        "workspace",
        True,
        False,
        True,
    )
    book = parser.parse_args(
        [
            "booking",
            "book",
            "--tenant",
            "t",
            "--user",
            "u",
            "--desk",
            "d",
            "--start",
            "2026-03-02T09:00",
            "--hours",
            "4",
        ]
    )
    assert (book.booking_action, book.start.tzinfo is not None, book.hours, book.standalone) == (
        "book",
        True,
        4.0,
        True,
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["consume", "payroll"])
    assert set(DOMAIN_NAMES) == set(DOMAINS)
