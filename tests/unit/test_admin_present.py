from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from service.admin.present import identity_provider, seconds
from service.admin.security import cookie_options, csrf_ok, csrf_token
from service.admin.timeline import changed, entries
from service.domain.tenants import ActiveToken, Tenant, hash_token
from service.settings import Settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_identity_provider_is_guessed_from_the_user_agent() -> None:
    assert identity_provider("Okta SCIM Client 1.0.0") == "Okta"
    assert identity_provider("Microsoft.Identity.Provisioning.Core/1.0") == "Microsoft Entra ID"
    assert identity_provider("curl/8.0") == "Other" and identity_provider(None) == "Unknown"
    assert seconds(0.42) == "0.4 s" and seconds(300) == "5 min"


def test_the_session_cookie_is_secure_only_behind_https_and_always_strict_and_httponly() -> None:
    assert cookie_options(Settings(public_url="https://scim.example.com"))["secure"] is True
    plain = cookie_options(Settings(public_url="http://127.0.0.1:8000"))
    assert plain["secure"] is False and plain["httponly"] is True and plain["samesite"] == "strict"


def test_csrf_tokens_belong_to_one_session() -> None:
    assert csrf_ok("session-a", csrf_token("session-a"))
    assert not csrf_ok("session-b", csrf_token("session-a")) and not csrf_ok("session-a", None)


def test_any_live_token_of_the_tenant_is_accepted_until_its_grace_ends() -> None:
    now = 1_000_000.0
    old = ActiveToken("old", hash_token("scimsync_old"), expires_at=now + 3600)
    new = ActiveToken("new", hash_token("scimsync_new"), expires_at=None)
    tenant = Tenant("t", "t", True, (old, new))
    assert tenant.token_for("scimsync_old", now) == old and tenant.token_for("scimsync_new", now) == new
    assert tenant.token_for("scimsync_old", now + 3601) is None and tenant.token_for("nope", now) is None


def event(kind: str, version: int, data: dict[str, object], at: float = 0) -> SimpleNamespace:
    return SimpleNamespace(type=kind, version=version, occurred_at=T0 + timedelta(seconds=at), data=data)


def test_a_timeline_says_what_changed_and_which_consumer_applied_it() -> None:
    events = [
        event("user.created", 1, {"id": "u", "userName": "ada", "active": True}),
        event("user.deactivated", 2, {"id": "u", "userName": "ada", "active": False}, at=10),
    ]
    gates = {
        "booking": SimpleNamespace(version=2, applied_at=T0 + timedelta(seconds=10.4)),
        "workspace": SimpleNamespace(version=1, applied_at=None),
    }
    created, deactivated = entries(events, gates)
    assert deactivated.changes == ["active: true → false"]
    assert deactivated.applied == {"booking": "applied by booking 0.4 s later", "workspace": "not yet"}
    assert created.applied == {"booking": "applied by booking", "workspace": "applied by workspace"}


def test_erased_entries_of_a_deleted_person_show_no_data() -> None:
    erased = {"id": "u", "erased": True}
    events = [event("user.created", 1, erased), event("user.deleted", 2, {"id": "u"})]
    first, deleted = entries(events, {})
    assert first.changes == ["details erased: this person was deleted"] and deleted.label == "Deleted"
    assert changed({"emails": [1]}, {"emails": [2]}) == ["emails"]
