import json

from service.domain.redaction import REDACTED, redacted_body


def test_passwords_and_tokens_never_survive_anywhere_in_the_body() -> None:
    body = {
        "userName": "ada@example.com",
        "password": "hunter2",
        "Password": "x",
        "urn:x:ext": {"apiToken": "t", "nested": [{"client_secret": "s"}]},
        "Operations": [{"op": "Replace", "path": "userPassword", "value": "p0ssw0rd"}],
        "note": "scimsync_abcdef",
        "header": "Bearer abc",
    }
    kept = redacted_body(json.dumps(body).encode())
    text = json.dumps(kept)
    for secret in ("hunter2", '"x"', '"t"', '"s"', "p0ssw0rd", "scimsync_abcdef", "Bearer abc"):
        assert secret not in text
    assert kept["userName"] == "ada@example.com" and kept["password"] == REDACTED
    assert kept["Operations"][0] == {"op": "Replace", "path": "userPassword", "value": REDACTED}


def test_non_json_and_huge_bodies_are_summarised_and_empty_ones_absent() -> None:
    assert redacted_body(b"") is None
    assert "not JSON" in json.dumps(redacted_body(b"password=hunter2"))
    assert "too large" in json.dumps(redacted_body(b"{" + b" " * 20_000 + b"}"))
