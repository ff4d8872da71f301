import pytest

from service.settings import LOCAL_DATABASE_URL, LOCAL_KAFKA, Settings, SettingsError


def test_defaults_point_at_the_local_stack() -> None:
    settings = Settings.from_env({})
    assert (settings.database_url, settings.kafka_bootstrap_servers) == (LOCAL_DATABASE_URL, LOCAL_KAFKA)
    assert settings.topics() == {"user": "user-lifecycle.v1", "group": "group-lifecycle.v1"}


def test_values_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u:p@db:5432/x",
            "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
            "SCIMSYNC_PUBLIC_URL": "https://scim.example.com/",
            "SCIMSYNC_MAX_PAGE_SIZE": "200",
        }
    )
    assert settings.scim_base_url("t1") == "https://scim.example.com/scim/v2/t1"
    assert settings.max_page_size == 200


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
        ("KAFKA_BOOTSTRAP_SERVERS", "nohost", "KAFKA_BOOTSTRAP_SERVERS"),
        ("SCIMSYNC_PUBLIC_URL", "scim.example.com", "SCIMSYNC_PUBLIC_URL"),
        ("SCIMSYNC_LOG_LEVEL", "loud", "SCIMSYNC_LOG_LEVEL"),
        ("SCIMSYNC_MAX_BODY_BYTES", "ten", "SCIMSYNC_MAX_BODY_BYTES"),
        ("SCIMSYNC_DB_POOL_MAX", "0", "SCIMSYNC_DB_POOL_MAX"),
    ],
)
def test_a_bad_value_is_an_error_that_names_the_variable(name: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        Settings.from_env({name: value})


def test_the_database_password_never_appears_in_the_error() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"DATABASE_URL": "postgresql://user:s3cret@/db"})
    assert "s3cret" not in str(raised.value)


def test_audit_retention_and_buffer() -> None:
    assert Settings.from_env({}).audit_retention_days == 30
    assert Settings.from_env({"SCIMSYNC_AUDIT_RETENTION_DAYS": "7"}).audit_retention_days == 7
    with pytest.raises(SettingsError, match="SCIMSYNC_AUDIT_RETENTION_DAYS"):
        Settings.from_env({"SCIMSYNC_AUDIT_RETENTION_DAYS": "0"})
    with pytest.raises(SettingsError, match="SCIMSYNC_AUDIT_MAX_PENDING"):
        Settings.from_env({"SCIMSYNC_AUDIT_MAX_PENDING": "x"})


def test_stream_write_timeout() -> None:
    assert Settings.from_env({}).stream_write_timeout_seconds == 30.0
    assert Settings.from_env({"SCIMSYNC_STREAM_WRITE_TIMEOUT_MS": "1500"}).stream_write_timeout_seconds == 1.5
    with pytest.raises(SettingsError, match="SCIMSYNC_STREAM_WRITE_TIMEOUT_MS"):
        Settings.from_env({"SCIMSYNC_STREAM_WRITE_TIMEOUT_MS": "0"})
