"""The runtime's exceptions."""

from __future__ import annotations


class InvalidEvent(ValueError):
    """A record that can't be an event of the contract: poison, sent to the DLQ without retrying.

    `kind` (json | envelope | schema) is safe to log; the message may quote the payload, so it goes only to the
    DLQ headers, next to the payload itself.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class TransientError(RuntimeError):
    """The database is unreachable or the transaction must be retried: nobody's fault, never dead-lettered."""
