"""`make bench`: every benchmark in turn, each a separate process; results are JSON lines on stdout.

Run one alone with `.venv/bin/python -m bench.<name> --help`. Needs the local stack and wrk.
"""

from __future__ import annotations

import subprocess
import sys

BENCHES = [
    "api",
    "groups",
    "relay",
    "e2e",
    "replay",
    "consumers",
    "rebuild",
    "million",
    "admin_search",
    "pipeline",
    "burst",
]


def main() -> int:
    chosen = sys.argv[1:] or BENCHES
    failed = []
    for name in chosen:
        print(f"# bench.{name}", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}"], check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"# failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
