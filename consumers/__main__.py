"""`python -m consumers booking|workspace`: run one domain's consumer (same as `scimsync consume ...`)."""

from __future__ import annotations

import argparse
import sys

from consumers.cli import DOMAIN_NAMES, run_consume


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m consumers", description="run a domain's event consumer")
    parser.add_argument("domain", choices=DOMAIN_NAMES)
    return run_consume(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
