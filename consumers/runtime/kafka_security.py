"""How every scimsync process authenticates to Kafka: TLS and SASL options for each aiokafka client.

One implementation for the service (API probe, relay, replay) and the consumers; it lives here because the
consumers may not import `service`, while `service` may import this standard-library-only module.

| variable | values |
|---|---|
| KAFKA_SECURITY_PROTOCOL | PLAINTEXT (default), SSL, SASL_PLAINTEXT, SASL_SSL |
| KAFKA_SASL_MECHANISM | PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (with SASL_*) |
| KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD | the SASL credentials (the password from a Secret) |
| KAFKA_SSL_CAFILE | PEM bundle of the brokers' CA (default: the system's CAs) |
| KAFKA_SSL_CERTFILE / KAFKA_SSL_KEYFILE | a client certificate and key, for mutual TLS |
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaSecurityError(ValueError):
    """A Kafka security setting that can't be used; the message names the variable."""


@dataclass(frozen=True)
class KafkaSecurity:
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_plain_username: str = ""
    sasl_plain_password: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""

    def __repr__(self) -> str:  # never print the password
        return (
            f"KafkaSecurity({self.security_protocol}, {self.sasl_mechanism or '-'}, user={self.sasl_plain_username!r})"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSecurity:
        env = os.environ if env is None else env
        security = cls(
            security_protocol=env.get("KAFKA_SECURITY_PROTOCOL", "") or "PLAINTEXT",
            sasl_mechanism=env.get("KAFKA_SASL_MECHANISM", ""),
            sasl_plain_username=env.get("KAFKA_SASL_USERNAME", ""),
            sasl_plain_password=env.get("KAFKA_SASL_PASSWORD", ""),
            ssl_cafile=env.get("KAFKA_SSL_CAFILE", ""),
            ssl_certfile=env.get("KAFKA_SSL_CERTFILE", ""),
            ssl_keyfile=env.get("KAFKA_SSL_KEYFILE", ""),
        )
        security.validate()
        return security

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def validate(self) -> None:
        if self.security_protocol not in PROTOCOLS:
            raise KafkaSecurityError(f"KAFKA_SECURITY_PROTOCOL must be one of {'|'.join(PROTOCOLS)}")
        if self.uses_sasl:
            if self.sasl_mechanism not in MECHANISMS:
                raise KafkaSecurityError(f"KAFKA_SASL_MECHANISM must be one of {'|'.join(MECHANISMS)} with SASL")
            if not self.sasl_plain_username or not self.sasl_plain_password:
                raise KafkaSecurityError("KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required with SASL")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise KafkaSecurityError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together")
        for name, path in (
            ("KAFKA_SSL_CAFILE", self.ssl_cafile),
            ("KAFKA_SSL_CERTFILE", self.ssl_certfile),
            ("KAFKA_SSL_KEYFILE", self.ssl_keyfile),
        ):
            if path and not self.uses_tls:
                raise KafkaSecurityError(f"{name} needs KAFKA_SECURITY_PROTOCOL SSL or SASL_SSL")
            if path and not os.access(path, os.R_OK):
                raise KafkaSecurityError(f"{name}: cannot read {path}")

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_tls:
            context = ssl.create_default_context(cafile=self.ssl_cafile or None)
            if self.ssl_certfile:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
            options["ssl_context"] = context
        if self.uses_sasl:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_plain_username
            options["sasl_plain_password"] = self.sasl_plain_password
        return options
