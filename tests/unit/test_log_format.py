"""Logs: human-readable on a terminal, JSON lines otherwise or when asked; a bad SCIMSYNC_LOG_FORMAT is refused."""

from __future__ import annotations

import io

import pytest

from consumers.runtime.logs import wants_console
from consumers.runtime.settings import ConsumerSettings
from service.banner import box
from service.settings import Settings, SettingsError


class _Terminal(io.BytesIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_console_on_a_terminal_and_json_elsewhere() -> None:
    assert wants_console("auto", _Terminal())
    assert not wants_console("auto", io.BytesIO())  # a pipe, a file, a log collector
    assert not wants_console("json", _Terminal())
    assert wants_console("console", io.BytesIO())


def test_the_format_is_a_setting_of_every_process() -> None:
    assert Settings.from_env({"SCIMSYNC_LOG_FORMAT": "JSON"}).log_format == "json"
    assert ConsumerSettings.from_env({}).log_format == "auto"
    with pytest.raises(SettingsError, match="SCIMSYNC_LOG_FORMAT"):
        Settings.from_env({"SCIMSYNC_LOG_FORMAT": "pretty"})


def test_the_box_keeps_values_whole_and_its_edges_aligned() -> None:
    url = "http://127.0.0.1:8000/scim/v2/0b5e6c1e-8a2d-4c3b-9a61-7d2f4e1c9a10"
    lines = box("scimsync is ready", [("SCIM Base URL", url), ("Bearer token", "scimsync_x")], ["note"]).splitlines()
    assert any(url in line for line in lines)
    assert len({len(line) for line in lines}) == 1
    assert lines[0].startswith("╔") and lines[-1].startswith("╚")
