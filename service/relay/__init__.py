"""The relay: publishes the Postgres event log (the outbox) to Kafka. Never imports the API."""
