"""The newcomer's first minute: `make run` (deploy/local/run) on a terminal shows readable logs and ends with the
demo tenant's Base URL and token in a box, after every process has said it is ready."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, Stack
from tests.integration.processes import free_port
from tests.integration.test_consumers_helpers import ConsumerEnv

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _read_until(fd: int, done: re.Pattern[str], within: float) -> str:
    out = b""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the terminal closed: the script ended
                break
            out += chunk
            if done.search(ANSI.sub("", out.decode(errors="replace"))):
                break
    return ANSI.sub("", out.decode(errors="replace"))


def test_make_run_prints_the_base_url_and_token_last_in_a_box(env: ConsumerEnv, stack: Stack, tmp_path: Path) -> None:
    port = free_port()
    environ = env.environ(
        SCIMSYNC_PORT=str(port),
        SCIMSYNC_RUN_DIR=str(tmp_path),
        SCIMSYNC_LOG_LEVEL="info",
        SCIMSYNC_RATE_LIMIT_PER_SECOND="0",
    )
    environ.pop("SCIMSYNC_LOG_FORMAT", None)
    main, terminal = pty.openpty()  # the script's stdout is a terminal, as for a person typing `make run`
    proc = subprocess.Popen(
        ["deploy/local/run"],
        cwd=ROOT,
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    try:
        output = _read_until(main, re.compile(r"╚═+╝"), within=120)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("make run did not stop on Ctrl-C")
        os.close(main)
    assert "╚" in output, output[-3000:]
    box = output[output.index("╔") :]
    before = output[: output.index("╔")]
    assert re.search(rf"SCIM Base URL\s+http://127\.0\.0\.1:{port}/scim/v2/[0-9a-f-]{{36}}", box), box
    assert re.search(r"Bearer token\s+scimsync_\S{20,}", box), box
    assert "Not ready" not in box, box
    # Every process said it was ready before the box, in human-readable lines, not JSON.
    for name, event in (("relay", r"relay\.(active|standby)"), ("consume-booking", r"consumer\.started")):
        assert re.search(rf"\[{name}\].*{event}", before), before[-3000:]
    assert re.search(r"\[consume-workspace\].*consumer\.started", before), before[-3000:]
    log_lines = [line for line in before.splitlines() if line.startswith("[")]
    assert log_lines and not [line for line in log_lines if re.match(r"\[[\w-]+\] \{", line)], log_lines[:5]
