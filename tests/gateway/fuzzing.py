"""Hypothesis strategies for hostile webhook requests: bodies built to reach the parser's depths.

A request is a real payload (Meta's message types and statuses, value-level errors, every other
webhook field: coexistence, preferences, identities, the account, templates, calls, a field no
model covers; SES bounces, complaints and deliveries inside SNS envelopes) with some of its values
replaced by what breaks consumers: nesting past every limit (253 to 1,000 levels), numeric
strings no int() takes ("²", 5,000 digits), ids too long for a header or an index, NULs, control
characters; then the body itself damaged: invalid UTF-8, other charsets, a BOM, cut short, a
Content-Encoding that is right, wrong or unknown. Signed as read (after decoding) or not at all.

``FUZZ_EXAMPLES`` sets how many examples each fuzz test runs (default 40, for ``make test``);
``make chaos`` runs ``FUZZ_EXAMPLES=2000``. The corpus sent through every consumer
(tests/system/test_poison.py) is a fifth of that, at least 40: each of its webhooks makes the
whole system work (a bot answer, a send, three statuses). With the variable unset the examples
are the same on every run (``derandomize``); with it set they are new each time.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.gateway.payloads import (
    ACCOUNT_TIME,
    BSUID,
    STATUSES,
    WABA_ID,
    catalog,
    contact,
    identity_messages,
    message,
    paths,
    sign,
    signal_changes,
    status,
    value,
    webhook,
)
from tests.snsfake import FakeSns

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
CORPUS_EXAMPLES = max(40, EXAMPLES // 5)
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
CORPUS_SETTINGS = settings(FUZZ_SETTINGS, max_examples=CORPUS_EXAMPLES)

# --------------------------------------------------------------------------- values

# A value nested ``depth`` deep is written into the JSON text after json.dumps (which could not
# write a thousand levels): a placeholder string stands for it until then.
_DEEP = re.compile(r'"@deep:(\d+):(array|object)@"')


def deep(depth: int, kind: str) -> str:
    return f"@deep:{depth}:{kind}@"


def _expand_deep(text: str) -> str:
    def nest(match: re.Match[str]) -> str:
        depth = int(match.group(1))
        if match.group(2) == "array":
            return "[" * depth + "1" + "]" * depth
        return '{"n":' * depth + '"bottom"' + "}" * depth

    return _DEEP.sub(nest, text)


NASTY_STRINGS = [
    "\x00",
    "ho\x00la",
    "\x00" * 40,
    "\\u0000",
    "\\\x00",
    "²",
    "٣",
    "1" * 5000,
    "9" * 13,
    "99999999999",
    "-1",
    "nan",
    "inf",
    "1e309",
    " 17",
    "wamid." + "A" * 300,
    "ñ" * 120,
    "x" * 3000,
    "a\r\nb",
    "\u2028\u2029",
    "\ufeff",
    "\U0001f600" * 70,
    "",
]
nasty_strings = st.sampled_from(NASTY_STRINGS) | st.text(max_size=30)
nasty_numbers = st.sampled_from(
    [0, -1, 2**31, 2**63 - 1, 2**64 - 1, -(2**63), 10**15, -62135596800, 1e300, -0.0, 5e-324]
) | st.integers(-(2**64), 2**64)
deep_values = st.builds(
    deep,
    st.sampled_from([128, 129, 200, 253, 254, 255, 256, 300, 500]),
    st.sampled_from(["array", "object"]),
)
nasty_leaves = st.one_of(
    nasty_strings,
    nasty_numbers,
    deep_values,
    st.none(),
    st.booleans(),
    st.builds(list),
    st.builds(dict),
)
nasty_values = st.recursive(
    nasty_leaves,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["id", "code", "\x00", "x" * 300, "text"]), children, max_size=3
        )
    ),
    max_leaves=6,
)


def _mutated(base: Any, places: list[tuple[Any, ...]], changes: list[tuple[int, Any]]) -> Any:
    payload = copy.deepcopy(base)
    for index, replacement in changes:
        path = places[index % len(places)]
        node = payload
        try:
            for step in path[:-1]:
                node = node[step]
            node[path[-1]] = copy.deepcopy(replacement)  # never one object in two places
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this path
    return payload


# --------------------------------------------------------------------------- WhatsApp


def _whatsapp_base() -> dict[str, Any]:
    messages = [m for _, m, _ in catalog()][:12]
    errors = [{"code": 131000, "title": "Something went wrong", "error_data": {"details": "d"}}]
    template = {
        "event": "APPROVED",
        "message_template_id": 1,
        "message_template_name": "promo",
        "message_template_language": "es_AR",
        "reason": "NONE",
    }
    payload = webhook(
        value(contacts=[contact()], messages=messages, statuses=STATUSES[:4], errors=errors)
    )
    payload["entry"].append(
        {
            "id": "1",
            "time": 1750000000,
            "changes": [{"field": "message_template_status_update", "value": template}],
        }
    )
    nfm = message(
        "wamid.flow",
        "interactive",
        {"type": "nfm_reply", "nfm_reply": {"name": "f", "response_json": {"a": 1}}},
    )
    payload["entry"][0]["changes"][0]["value"]["messages"].append(nfm)
    payload["entry"][0]["changes"][0]["value"]["statuses"].append(
        status("wamid.out9", "failed", errors=[{"code": "131047", "title": "t"}])
    )
    # A phoneless customer, and their answer to a call permission request.
    phoneless = [contact(None, "Ana", user_id=BSUID) | {"profile": {"username": "ana"}}]
    permission = {"response": "accept", "expiration_timestamp": ACCOUNT_TIME + 7 * 86400}
    tap = {"type": "call_permission_reply", "call_permission_reply": permission}
    hidden = [
        message("wamid.bsuid", "text", {"body": "Hola"}, from_user_id=BSUID),
        message("wamid.permission", "interactive", tap, from_user_id=BSUID),
    ]
    for item in hidden:
        del item["from"]
    delivered = status("wamid.out1", "delivered", recipient_user_id=BSUID)
    del delivered["recipient_id"]
    payload["entry"][0]["changes"].append(
        {
            "field": "messages",
            "value": value(contacts=phoneless, messages=hidden, statuses=[delivered]),
        }
    )
    payload["entry"][0]["changes"].append(
        {"field": "messages", "value": value(messages=identity_messages())}
    )
    changes = [{"field": field, "value": item} for field, item in signal_changes()]
    payload["entry"].append({"id": WABA_ID, "time": ACCOUNT_TIME, "changes": changes})
    return payload


WHATSAPP_BASE = _whatsapp_base()
WHATSAPP_PATHS = paths(WHATSAPP_BASE)

BASE_CUSTOMER = "5491135722871"
NEW_NUMBER = "5491144445555"  # where the base's customer moves (user_changed_number)


def _from_customer(number: int) -> Any:
    """The base payload as another customer's messages, with identifiers (phones, BSUIDs,
    wamids, call ids) of their own: consumers deduplicate on the wamid, link a customer's
    identifiers, and one customer answered hundreds of times would wait on Meta's
    per-recipient limit."""
    text = json.dumps(WHATSAPP_BASE).replace(BASE_CUSTOMER, f"54911{number:08d}")
    text = text.replace(NEW_NUMBER, f"54922{number:08d}").replace('"AR.', f'"AR.{number}')
    return json.loads(
        text.replace('"wamid.', f'"wamid.{number}.').replace('"wacid.', f'"wacid.{number}.')
    )


whatsapp_payloads = st.builds(
    lambda number, changes: _mutated(_from_customer(number), WHATSAPP_PATHS, changes),
    st.integers(0, 10**8 - 1),
    st.lists(st.tuples(st.integers(0, 10**6), nasty_values), min_size=1, max_size=6),
)

# --------------------------------------------------------------------------- SES

SES_EVENTS: list[dict[str, Any]] = [
    {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": "nadie@example.com"}, {"emailAddress": "b@c.d"}],
            "feedbackId": "feedback-1",
        },
        "mail": {"messageId": "0100018f-ses-1"},
    },
    {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "enojado@example.com"}],
            "complaintFeedbackType": "abuse",
            "feedbackId": "feedback-2",
        },
        "mail": {"messageId": "0100018f-ses-2"},
    },
    {
        "eventType": "Delivery",
        "delivery": {"recipients": ["ok@example.com", "otro@example.com"]},
        "mail": {"messageId": "0100018f-ses-3"},
    },
]
SES_PATHS = [paths(event) for event in SES_EVENTS]

ses_events = st.integers(0, len(SES_EVENTS) - 1).flatmap(
    lambda n: st.builds(
        lambda changes: _mutated(SES_EVENTS[n], SES_PATHS[n], changes),
        st.lists(st.tuples(st.integers(0, 10**6), nasty_values), max_size=5),
    )
)

# --------------------------------------------------------------------------- the request


@dataclass
class Request:
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    signed: bool = True

    def __repr__(self) -> str:  # what hypothesis prints for a failing example
        shown = self.body[:300] + (b"..." if len(self.body) > 300 else b"")
        return f"Request({self.path}, signed={self.signed}, headers={self.headers}, body={shown!r})"


def to_json(payload: Any, ascii_only: bool) -> bytes:
    return _expand_deep(json.dumps(payload, ensure_ascii=ascii_only)).encode("utf-8")


DAMAGE = ["none"] * 6 + ["invalid_utf8", "bom", "utf16", "latin1", "cut", "lone_surrogate"]


def damaged(body: bytes, how: str, where: int) -> bytes:
    at = where % (len(body) + 1)
    if how == "invalid_utf8":
        return body[:at] + b"\xff\xc3\x28" + body[at:]
    if how == "bom":
        return b"\xef\xbb\xbf" + body
    if how == "utf16":
        return body.decode("utf-8", "replace").encode("utf-16")
    if how == "latin1":
        return body.decode("utf-8", "replace").encode("latin-1", "replace")
    if how == "cut":
        return body[:at]
    if how == "lone_surrogate":
        return body.replace(b'"text"', b'"\\ud800text"', 1)
    return body


ENCODINGS = ["none"] * 6 + ["gzip", "deflate", "gzip_corrupt", "deflate_corrupt", "br", "x-unknown"]
CHARSETS = [
    "application/json",
    "application/json; charset=utf-8",
    "text/plain; charset=latin-1",
    "application/json; charset=utf-16",
    "application/x-www-form-urlencoded",
    "",
]
UNSIGNED = ["missing", "empty", "zeros", "other_body", "wrong_secret", "garbage"]


def encoded(body: bytes, encoding: str) -> tuple[bytes, dict[str, str]]:
    """The bytes sent for ``body`` and the Content-Encoding header."""
    if encoding == "none":
        return body, {}
    if encoding == "gzip":
        return gzip.compress(body), {"Content-Encoding": "gzip"}
    if encoding == "deflate":
        return zlib.compress(body), {"Content-Encoding": "deflate"}
    if encoding == "gzip_corrupt":
        return gzip.compress(body)[:10] + b"\xff\xfe corrupt", {"Content-Encoding": "gzip"}
    if encoding == "deflate_corrupt":
        return b"\x78\x9c\xff\xff" + body[:20], {"Content-Encoding": "deflate"}
    return body, {"Content-Encoding": encoding}


def whatsapp_signature(body: bytes, how: str) -> str | None:
    return {
        "missing": None,
        "empty": "",
        "zeros": "sha256=" + "0" * 64,
        "other_body": sign(body + b" "),
        "wrong_secret": sign(body, secret="not-the-secret"),
        "garbage": "sha256=not-hex-at-all",
    }[how]


@st.composite
def whatsapp_requests(draw: st.DrawFn, secret: str, *, signed_only: bool = False) -> Request:
    payload = draw(whatsapp_payloads)
    body = damaged(
        to_json(payload, draw(st.booleans())),
        draw(st.sampled_from(DAMAGE)),
        draw(st.integers(0, 10**6)),
    )
    sent, headers = encoded(body, draw(st.sampled_from(ENCODINGS)))
    content_type = draw(st.sampled_from(CHARSETS))
    if content_type:
        headers["Content-Type"] = content_type
    signed = signed_only or draw(st.integers(0, 3)) > 0  # most signed: they reach the parser
    if signed:
        headers["X-Hub-Signature-256"] = sign(body, secret=secret)  # over what is read
    else:
        signature = whatsapp_signature(body, draw(st.sampled_from(UNSIGNED)))
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
    return Request("/webhook/whatsapp", sent, headers, signed)


ENVELOPE_DAMAGE = ["none"] * 4 + ["tampered", "other_cert", "bad_type", "nasty_field"]


@st.composite
def ses_requests(draw: st.DrawFn, sns: FakeSns, *, signed_only: bool = False) -> Request:
    event = draw(ses_events)
    text = _expand_deep(json.dumps(event, ensure_ascii=draw(st.booleans())))
    envelope: dict[str, Any] = sns.message(message=text, version=draw(st.sampled_from(["1", "2"])))
    how = "none" if signed_only else draw(st.sampled_from(ENVELOPE_DAMAGE))
    signed = how == "none"
    if how == "tampered":
        envelope["Message"] = envelope["Message"].replace("example", "exampl3")
        envelope["MessageId"] += "x"
    elif how == "other_cert":
        envelope["SigningCertURL"] = draw(
            st.sampled_from([sns.cert_url("missing.pem"), "https://evil.example/x.pem", "x" * 3000])
        )
    elif how == "bad_type":
        envelope["Type"] = draw(
            st.sampled_from([[], {}, ["Notification"], None, 1, deep(500, "array")])
        )
    elif how == "nasty_field":
        name = draw(
            st.sampled_from(["MessageId", "TopicArn", "Signature", "Timestamp"])  # all signed
        )
        envelope[name] = draw(nasty_values)
    whole = _expand_deep(json.dumps(envelope)).encode()
    body = whole
    if not signed_only:
        body = damaged(whole, draw(st.sampled_from(DAMAGE)), draw(st.integers(0, 10**6)))
    if body != whole:
        signed = False  # a damaged envelope may still read, but no signature covers it
    sent, headers = encoded(body, draw(st.sampled_from(ENCODINGS)))
    headers["Content-Type"] = "text/plain; charset=UTF-8"
    return Request("/webhook/ses", sent, headers, signed)
