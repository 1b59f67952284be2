"""Events as the bytes published: serialised once, never deeper than a consumer can read.

Consumers parse events with pydantic's JSON parser, which refuses nesting past 200 levels, so an
event whose pass-through objects (Meta's raw message, a referral, an unhandled field's value, ...)
nest deeper goes out without them, marked, rather than as something no consumer can read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gateway.publisher import Outgoing
from shared.events import Event, InboundMessage, MessageContext

# Fields holding Meta's objects as they came, and what each reads as when it is dropped to make
# an event serialisable.
_PASSTHROUGH_FIELDS: dict[str, object] = {
    "contacts": None,
    "order": None,
    "system": None,
    "referral": None,
    "pricing": None,
    "conversation": None,
    "session": None,
    "value": None,
    "details": {},
    "buttons": [],
}


def _slim(event: Event, reason: str) -> Event:
    """The event without Meta's pass-through objects (kept: ids, type, text, identities)."""
    update: dict[str, object] = {
        name: empty
        for name, empty in _PASSTHROUGH_FIELDS.items()
        if name in type(event).model_fields
    }
    if "raw" in type(event).model_fields:
        raw = getattr(event, "raw", {})
        kind = raw.get("type")
        update["raw"] = {
            "id": raw.get("id"),
            "type": kind if type(kind) is str else None,  # it may be what nests too deep
            "truncated": f"not serialisable: {reason[:200]}",
        }
    if isinstance(event, InboundMessage) and event.context is not None:
        update["context"] = event.context.model_copy(update={"referred_product": None})
    return event.model_copy(update=update)


# Consumers parse events with pydantic's JSON parser, which refuses nesting past 200 levels; an
# event must never be published that no consumer can read. Meta's objects are a few levels deep.
MAX_PASSTHROUGH_DEPTH = 128


def _deeper_than(value: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if type(node) is dict:
            stack.extend((child, depth + 1) for child in node.values())
        elif type(node) is list:
            stack.extend((child, depth + 1) for child in node)
    return False


def _too_deep(event: Event) -> bool:
    for name in ("raw", *_PASSTHROUGH_FIELDS):
        if _deeper_than(getattr(event, name, None), MAX_PASSTHROUGH_DEPTH):
            return True
    context = getattr(event, "context", None)
    return isinstance(context, MessageContext) and _deeper_than(
        context.referred_product, MAX_PASSTHROUGH_DEPTH
    )


# A JSON string, the loop unrolled (a run of plain bytes at a time, not one byte per step).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_ESCAPED_QUOTE = b'\\"'
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"{}[]")
_INNERMOST = re.compile(rb"\{\}|\[\]")


def may_be_deep(body: bytes) -> bool:
    """Whether the body nests past the limit anywhere (then each event is checked).

    Cheap for Meta's bodies: fewer brackets than the limit cannot nest that deep; otherwise the
    strings are cut out, the brackets kept, and innermost pairs peeled off once per level (in C,
    at most the limit's number of passes).
    """
    if body.count(b"{") + body.count(b"[") <= MAX_PASSTHROUGH_DEPTH:
        return False
    if _ESCAPED_QUOTE in body:
        outside = _JSON_STRING.sub(b"", body)
    else:
        # No quote is escaped: every quote of the (valid JSON) body opens or closes a string,
        # so what lies outside the strings is every other piece between quotes.
        outside = b"".join(body.split(b'"')[::2])
    brackets = outside.translate(None, _NOT_BRACKETS)
    for _ in range(MAX_PASSTHROUGH_DEPTH):
        if not brackets:
            return False
        brackets = _INNERMOST.sub(b"", brackets)
    return bool(brackets)


def encode(
    events: Sequence[Event], skipped: list[tuple[Event, str]], *, deep: bool = True
) -> list[Outgoing]:
    """Serialise each event; one too deep for a consumer goes out without Meta's raw objects
    (each such event, and each that cannot go out at all, is reported in ``skipped``)."""
    items = []
    for event in events:
        reason = None
        if deep and _too_deep(event):
            reason = f"nested deeper than {MAX_PASSTHROUGH_DEPTH} levels"
        else:
            try:
                items.append(Outgoing(event, event.model_dump_json().encode()))
                continue
            except ValueError as error:
                reason = str(error)
        slim = _slim(event, reason)
        try:
            items.append(Outgoing(slim, slim.model_dump_json().encode()))
        except ValueError as error:
            skipped.append((event, f"{event.type} {event.event_id} cannot be serialised: {error}"))
            continue
        skipped.append(
            (event, f"{event.type} {event.event_id} published without raw objects: {reason}")
        )
    return items
