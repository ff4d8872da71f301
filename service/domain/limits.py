"""Limits on what a client may store, so that everything stored can be used again. One place for every size limit.

Values. `MAX_VALUE_LENGTH` bounds every string attribute value (userName, displayName, an email, a certificate…),
counted in characters. A filter can always express a stored value: its length limit
(`domain/filter.py`) leaves room for one comparison on a value of this length even when every character
has to be written as a six-character `\\uXXXX` escape.

Resources and events. A whole stored resource, and so one event, is bounded too.

Why they exist: every accepted write becomes one Kafka record, and Kafka refuses records over its maximum
message size (1 MiB by default: `message.max.bytes`, topic `max.message.bytes`, the producer's
`max_request_size`). A record it refuses is parked by the relay and stops its user's or group's stream until an
SRE acts, so the API refuses at write time what could never be published.

- A stored User or Group, as JSON (UTF-8), is at most `MAX_RESOURCE_BYTES`. Its events carry it plus the id,
  `active` and the CloudEvents envelope (under 1 KiB, `EVENT_OVERHEAD_BYTES`).
- A group's membership is not part of its resource: a membership change lists the ids that changed, at most
  `MEMBERS_PER_EVENT` per event; a larger change (a 100,000-member group emptied by one PATCH) is published as
  several `group.membership_changed` events of the group, one version each, in order.

Worst case, a `group.created` with the largest displayName/externalId and its first `MEMBERS_PER_EVENT` ids:
262,144 + 10,000 x 39 (a quoted uuid and a comma) + 1,024 = 653,168 bytes, so 395,408 bytes (38 %) under Kafka's
default. tests/unit/test_limits.py builds that record, and the largest allowed user's, and checks it.
"""

from __future__ import annotations

from service.domain.errors import InvalidValue

MAX_VALUE_LENGTH = 4096

KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_576
MAX_RESOURCE_BYTES = 262_144  # 256 KiB: a real user is a few KiB; this leaves every event far below Kafka's 1 MiB
MEMBERS_PER_EVENT = 10_000  # ids (added + removed) in one group event: 390,000 bytes of JSON
EVENT_OVERHEAD_BYTES = 1_024  # envelope, key, headers and record framing of one event, rounded up


def check_resource_size(resource_type: str, size: int) -> None:
    """Refuse a resource (as it would be stored) over MAX_RESOURCE_BYTES, naming the limit.

    400 invalidValue rather than 413: the request may be small (a PATCH adding one value to a large user); what is
    too large is the resource it would produce, a value the server can't accept (RFC 7644 §3.12). 413 stays the
    answer for a request body over SCIMSYNC_MAX_BODY_BYTES.
    """
    if size > MAX_RESOURCE_BYTES:
        raise InvalidValue(
            f"The {resource_type} would be {size:,} bytes as stored; the limit is {MAX_RESOURCE_BYTES:,} bytes"
            " (maxResourceBytes): every change is published as one event, and events must fit Kafka's 1 MiB"
        )
