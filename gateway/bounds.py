"""What a value from outside may be once it travels: the edge's rules, written once.

Whatever Meta or SNS sends ends up in AMQP headers (a wamid is a message's correlation id),
PostgreSQL columns (a customer's text and name) and indexes (a customer's id, an email
address), in every consumer. A value those cannot hold would make each consumer fail, retry and
dead-letter it, so it is made safe here, where it enters, and nowhere else:

- **NUL** (U+0000): PostgreSQL's text and jsonb cannot hold it. It becomes U+FFFD, the
  replacement character ("a character that could not be represented"), wherever it appears:
  texts, names, ids, keys. In JSON a NUL can only be written as the escape ``\\u0000``, so a body
  is searched for those six bytes (one scan in C) and rewritten only when they are there.
- **Ids** (wamids, phone number ids, user ids, SES message ids): at most :data:`MAX_ID_BYTES`
  of UTF-8. Meta's longest are business-scoped user ids (a country code and up to 128
  characters, ~135); wamids are ~60. The bound is under AMQP's 255 bytes for a correlation id
  and far under PostgreSQL's ~2,700 bytes for an index row.
- **Codes** (Meta's error codes): an int4 column's range, :data:`MAX_CODE`.
- **Email addresses**: at most 254 characters (RFC 5321's limit on a path) and no control
  characters; anything else is not an address.
"""

from __future__ import annotations

import re
from typing import Any

NUL = "\x00"
NUL_REPLACEMENT = "\ufffd"
NUL_ESCAPE = b"\\u0000"
MAX_ID_BYTES = 200
MAX_CODE = 2**31 - 1
MAX_ADDRESS_CHARS = 254

# The escape \u0000 itself, not text that merely looks like it: "\\u0000" in JSON is a backslash
# and "u0000". An escape starts at a backslash preceded by an even number of backslashes.
_NUL_ESCAPES = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def without_nul(body: bytes) -> bytes:
    """The JSON ``body`` with every NUL escape written as U+FFFD's (unchanged when it has none)."""
    if NUL_ESCAPE not in body:
        return body
    return _NUL_ESCAPES.sub(rb"\1\\ufffd", body)


def text_without_nul(text: str) -> str:
    """A decoded string with its NULs replaced (for fields read one by one)."""
    return text.replace(NUL, NUL_REPLACEMENT) if NUL in text else text


def id_fits(text: str) -> bool:
    """Whether ``text`` is short enough to be an id (:data:`MAX_ID_BYTES` of UTF-8)."""
    if len(text) * 4 <= MAX_ID_BYTES:  # the common case, without encoding
        return True
    if len(text) > MAX_ID_BYTES:
        return False
    return len(text.encode("utf-8", "surrogatepass")) <= MAX_ID_BYTES


def error_code(value: Any) -> int | None:
    """An integer code (a number, or a string of ASCII digits) within an int4; else None."""
    if type(value) is int:
        return value if -MAX_CODE <= value <= MAX_CODE else None
    # isdigit() alone admits "²" and "٣", which int() refuses or reads as another digit.
    if type(value) is str and 0 < len(value) <= 10 and value.isascii() and value.isdigit():
        number = int(value)
        return number if number <= MAX_CODE else None
    return None


def email_address(value: Any) -> str | None:
    """``value`` when it can be an email address: a string, 1 to 254 characters, no control
    characters (a NUL, a line break)."""
    if type(value) is not str or not 0 < len(value) <= MAX_ADDRESS_CHARS:
        return None
    return None if _CONTROL.search(value) else value
