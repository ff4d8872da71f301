"""The consumer runtime's small parts: settings, snapshot reading, metrics text, dead-letter headers, CLI."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition

from consumers.cli import DOMAIN_NAMES, add_commands
from consumers.domains import DOMAINS
from consumers.runtime import snapshot
from consumers.runtime.deadletter import dead_letter_headers
from consumers.runtime.domain import Domain, Stream
from consumers.runtime.loop import ConsumerLoop
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
    metrics = Metrics(group="workspace", topics=("user-lifecycle.v1", "group-lifecycle.v1"))
    metrics.add("applied", 3, topic="user-lifecycle.v1")
    metrics.add("applied", 2, topic="group-lifecycle.v1")
    metrics.add("skipped_duplicate", topic="user-lifecycle.v1")
    metrics.lag.update({("user-lifecycle.v1", 0): 5, ("user-lifecycle.v1", 1): 0, ("group-lifecycle.v1", 0): 1})
    text = metrics.render()
    assert 'scimsync_consumer_applied_total{group="workspace",topic="user-lifecycle.v1"} 3\n' in text
    assert 'scimsync_consumer_applied_total{group="workspace",topic="group-lifecycle.v1"} 2\n' in text
    assert 'scimsync_consumer_skipped_duplicate_total{group="workspace",topic="group-lifecycle.v1"} 0\n' in text
    assert "# TYPE scimsync_consumer_lag gauge\n" in text
    assert 'scimsync_consumer_lag{group="workspace",topic="user-lifecycle.v1",partition="0"} 5\n' in text
    assert 'scimsync_consumer_lag{group="workspace",topic="group-lifecycle.v1",partition="0"} 1\n' in text
    assert (metrics.handled, metrics.total_lag, metrics.counts["applied"]) == (6, 6, 5)


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
        Stream(versions_table="x; DROP TABLE y", handlers={})
    with pytest.raises(ValueError, match="plain names"):
        Stream(versions_table="x.v", handlers={}, id_column="id; --")
    with pytest.raises(ValueError, match="topic settings"):
        Domain(name="x", schema_sql=Path("x.sql"), streams={"payroll_topic": Stream("x.v", {})})
    with pytest.raises(ValueError, match="projection"):
        Domain(name="x", schema_sql=Path("x.sql"), streams={"user_topic": Stream("x.v", {})}, projection=("x",))


def test_the_version_gate_reapplies_the_stored_version_only_for_repairs() -> None:
    sql = Stream(versions_table="workspace.group_versions", handlers={}, id_column="group_id").advance_sql
    assert "INSERT INTO workspace.group_versions AS v (tenant_id, group_id, version)" in sql
    assert "WHERE v.version < EXCLUDED.version OR ($4 AND v.version = EXCLUDED.version)" in sql


def test_workspace_consumes_users_and_groups_each_with_its_own_gate() -> None:
    workspace, booking = DOMAINS["workspace"], DOMAINS["booking"]
    users, groups = workspace.streams["user_topic"], workspace.streams["group_topic"]
    assert (users.versions_table, users.version_attribute, users.snapshots) == (
        "workspace.versions",
        "userversion",
        True,
    )
    assert (groups.versions_table, groups.version_attribute, groups.id_column, groups.snapshots) == (
        "workspace.group_versions",
        "groupversion",
        "group_id",
        False,
    )
    assert set(groups.handlers) == {"group.created", "group.updated", "group.membership_changed", "group.deleted"}
    assert set(booking.streams) == {"user_topic"} and booking.projection == ("booking.users",)
    assert "workspace.teams" in workspace.projection and "workspace.group_versions" in workspace.projection


def test_group_topic_settings() -> None:
    default = ConsumerSettings.from_env({})
    assert (default.topic("group_topic"), default.dead_letter_topic_for("group_topic")) == (
        "group-lifecycle.v1",
        "group-lifecycle.v1.dlq",
    )
    custom = ConsumerSettings.from_env({"SCIMSYNC_GROUP_TOPIC": "g", "SCIMSYNC_USER_DLQ_TOPIC": "u.dead"})
    assert (custom.dead_letter_topic_for("group_topic"), custom.dead_letter_topic_for("user_topic")) == (
        "g.dlq",
        "u.dead",
    )
    with pytest.raises(SettingsError, match="SCIMSYNC_GROUP_TOPIC"):
        ConsumerSettings.from_env({"SCIMSYNC_GROUP_TOPIC": "user-lifecycle.v1"})


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
    rebuild = parser.parse_args(["rebuild", "booking", "--since", "2026-03-02T09:00", "--force"])
    assert (rebuild.domain, rebuild.force, rebuild.since.tzinfo is not None, rebuild.standalone) == (
        "booking",
        True,
        True,
        True,
    )
    assert parser.parse_args(["rebuild", "workspace"]).force is False
    with pytest.raises(SystemExit):
        parser.parse_args(["consume", "payroll"])
    assert set(DOMAIN_NAMES) == set(DOMAINS)


def test_the_group_notices_a_dead_member_within_seconds() -> None:
    default = ConsumerSettings.from_env({})
    assert (default.session_timeout_ms, default.heartbeat_interval_ms) == (6000, 1000)
    custom = ConsumerSettings.from_env(
        {"SCIMSYNC_CONSUMER_SESSION_TIMEOUT_MS": "30000", "SCIMSYNC_CONSUMER_HEARTBEAT_MS": "3000"}
    )
    assert (custom.session_timeout_ms, custom.heartbeat_interval_ms) == (30000, 3000)
    with pytest.raises(SettingsError, match="SCIMSYNC_CONSUMER_HEARTBEAT_MS"):
        ConsumerSettings.from_env({"SCIMSYNC_CONSUMER_HEARTBEAT_MS": "3000"})


def test_a_delta_stream_names_where_its_held_events_wait() -> None:
    with pytest.raises(ValueError, match="held_table"):
        Stream(versions_table="x.v", handlers={}, snapshots=False)
    with pytest.raises(ValueError, match="held_table"):
        Stream(versions_table="x.v", handlers={}, held_table="x.held")
    assert Stream(versions_table="x.v", handlers={}, snapshots=False, held_table="x.held").held_table == "x.held"


class _RebalancingConsumer:
    """Two partitions; while the position of one is awaited, the group takes the other away."""

    def __init__(self) -> None:
        self.assigned = {TopicPartition("t", 0), TopicPartition("t", 1)}

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def highwater(self, tp: TopicPartition) -> int:
        assert tp in self.assigned, "Partition is not assigned"  # as aiokafka does
        return 10

    async def position(self, tp: TopicPartition) -> int:
        self.assigned = {tp}
        return 7


async def test_a_partition_taken_away_while_lag_is_measured_does_not_stop_the_consumer() -> None:
    settings = ConsumerSettings()
    metrics = Metrics(group="g", topics=("t",))
    loop = ConsumerLoop(DOMAINS["workspace"], settings, None, None, None, metrics, None)  # type: ignore[arg-type]
    await loop._measure_lag(_RebalancingConsumer())  # type: ignore[arg-type]
    assert list(metrics.lag.values()) == [3]
