"""Limits on what a client may store, so that everything stored can be used again.

`MAX_VALUE_LENGTH` bounds every string attribute value (userName, displayName, an email, a certificate…),
counted in characters. A filter can always express a stored value: its length limit
(`domain/filter.py`) leaves room for one comparison on a value of this length even when every character
has to be written as a six-character `\\uXXXX` escape.
"""

from __future__ import annotations

MAX_VALUE_LENGTH = 4096
