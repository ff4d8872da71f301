"""The box `make run` prints last, once every process is ready: what a newcomer copies into Okta or Entra."""

from __future__ import annotations

import unicodedata


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def box(title: str, rows: list[tuple[str, str]], notes: list[str]) -> str:
    """A double-lined box: the title, then `label  value` rows (values never wrapped: they are copied), then notes."""
    label_width = max((len(label) for label, _ in rows), default=0)
    lines = [title, ""] + [f"{label.ljust(label_width)}  {value}" for label, value in rows] + [""] + notes
    inner = max(_width(line) for line in lines) + 4
    out = ["╔" + "═" * inner + "╗"]
    out += ["║  " + line + " " * (inner - 2 - _width(line)) + "║" for line in lines]
    out.append("╚" + "═" * inner + "╝")
    return "\n".join(out)
