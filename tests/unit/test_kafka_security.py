"""Kafka TLS/SASL settings: parsed from the environment, refused when unusable, given to every aiokafka client."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import pytest

from consumers.runtime.kafka_security import KafkaSecurity, KafkaSecurityError
from consumers.runtime.settings import ConsumerSettings
from consumers.runtime.settings import SettingsError as ConsumerSettingsError
from service.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}
# Test-data tooling that only ever talks to the local, plaintext stack.
TOOLING = {ROOT / "consumers" / "samples.py"}

SASL_SSL = {
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "scimsync",
    "KAFKA_SASL_PASSWORD": "s3cret",
}


def test_plaintext_by_default_adds_nothing_but_the_protocol() -> None:
    assert Settings.from_env({}).kafka.client_options() == {"security_protocol": "PLAINTEXT"}
    assert ConsumerSettings.from_env({}).kafka.client_options() == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_gives_credentials_and_a_verifying_tls_context(tmp_path: Path) -> None:
    options = Settings.from_env(SASL_SSL).kafka.client_options()
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("scimsync", "s3cret")
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert "s3cret" not in repr(Settings.from_env(SASL_SSL).kafka)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({**SASL_SSL, "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
        ({**SASL_SSL, "KAFKA_SASL_PASSWORD": ""}, "KAFKA_SASL_PASSWORD"),
        ({**SASL_SSL, "KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "KAFKA_SSL_CAFILE"),
        ({"KAFKA_SSL_CAFILE": "/etc/hostname"}, "KAFKA_SSL_CAFILE"),  # TLS file without a TLS protocol
        ({**SASL_SSL, "KAFKA_SSL_CERTFILE": "/etc/hostname"}, "KAFKA_SSL_KEYFILE"),
    ],
)
def test_unusable_settings_stop_every_process_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)
    with pytest.raises(ConsumerSettingsError, match=named):
        ConsumerSettings.from_env(env)
    with pytest.raises(KafkaSecurityError):
        KafkaSecurity.from_env(env)


def _client_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text())
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CLIENTS
    ]


def test_every_aiokafka_client_the_processes_build_gets_the_security_options() -> None:
    """A client built without them would connect in plaintext, and fail only on a secured cluster."""
    sources = [p for folder in ("service", "consumers") for p in (ROOT / folder).rglob("*.py") if p not in TOOLING]
    calls = {(p, c.lineno): c for p in sources for c in _client_calls(p)}
    assert len(calls) >= 8  # producer, admin, probe, consumer, rebuild's three, topics
    bare = [
        f"{p.relative_to(ROOT)}:{line}"
        for (p, line), call in calls.items()
        if not any(k.arg is None for k in call.keywords)  # `**options`
    ]
    assert bare == []
