"""What to do with each Meta error code (the table in the Cloud API notes). Pure.

Meta's codes are read here only: the rest of the sender asks :func:`classify` what an answer
means, and other services read ``MessageFailed.reason_code`` (:func:`failure_reason`).
"""

from __future__ import annotations

import random
from datetime import timedelta
from enum import Enum

from shared.events import FailureReason, MetaError


class Action(Enum):
    RETRY = "retry"  # temporary: backoff through the retry tiers, up to the validity period
    PAIR_BACKOFF = "pair_backoff"  # 131056: back off this recipient only
    WINDOW = "window"  # 131047: fallback template, else failed
    CIRCUIT = "circuit"  # 190 / 0, 131042 / 131044: hold every message of the number, probe
    NOT_TODAY = "not_today"  # 131049: not again before WITHHELD_FOR
    PHONE_ONLY = "phone_only"  # 131062: this kind cannot go to a BSUID: the phone, if known
    MARKETING_STOPPED = "marketing_stopped"  # 131050: the customer stopped marketing messages
    FAIL = "fail"  # permanent


RETRYABLE = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131057, 133004})
# The circuits a number has: sending held for the whole number while Meta refuses it for the
# account's sake (its access token, its payment method), one message probing now and then.
CIRCUIT_OF_CODE = {0: "token", 190: "token", 131042: "payment", 131044: "payment"}
CIRCUIT_KINDS = ("token", "payment")
# Codes that mean a bug on our side or a problem with the account: an operator must know.
ALERT_CODES = frozenset(
    {
        3,
        10,
        100,
        200,
        368,
        130497,
        131005,
        131008,
        131009,
        131031,
        131042,
        131045,
        131048,
        132000,
        132001,
        132005,
        132007,
        132012,
        132015,
        132016,
    }
)
MAINTENANCE = 131057  # "<= 1 min": a short, capped wait
# 131049: "not delivered to maintain healthy ecosystem engagement": do not send again before.
WITHHELD_FOR = timedelta(hours=24)
# The template itself cannot be sent: it does not exist (in that language), paused, disabled.
TEMPLATE_UNUSABLE = frozenset({132001, 132015, 132016})
_ACTIONS = {
    131056: Action.PAIR_BACKOFF,
    131047: Action.WINDOW,
    131049: Action.NOT_TODAY,
    131062: Action.PHONE_ONLY,
    131050: Action.MARKETING_STOPPED,
}
# Meta's answers that say what became of a template (its status now).
TEMPLATE_STATUS_OF_CODE = {132015: "PAUSED", 132016: "DISABLED"}
# Why Meta refused it, in words, for the codes whose title says too little.
EXPLAINED = {
    131026: "Meta could not deliver it (the number is not on WhatsApp, or its app is too old)",
    131050: "the customer stopped marketing messages from this business",
    131062: "Meta takes no business-scoped user id as the recipient of this kind of message",
    131063: "marketing templates are turned off for this Cloud API account",
    130497: "the account may not message users in the recipient's country",
}


# The Graph API adapter's own errors, in Meta's words: media too large or gone (final).
MEDIA_UPLOAD_ERROR = 131053
MEDIA_DOWNLOAD_ERROR = 131052
# 100 on ``GET /<media_id>``: "Object with ID ... does not exist" (unknown, or expired).
UNKNOWN_OBJECT = 100


def explained(code: int) -> str | None:
    """What Meta's code means, in words, when its title says too little."""
    return EXPLAINED.get(code)


def classify(code: int) -> Action:
    if code in CIRCUIT_OF_CODE:
        return Action.CIRCUIT
    if code in RETRYABLE:
        return Action.RETRY
    return _ACTIONS.get(code, Action.FAIL)


def circuit_of(code: int) -> str:
    """Which of the number's circuits an answer opens (``classify`` said CIRCUIT)."""
    return CIRCUIT_OF_CODE[code]


def failure_reason(error: MetaError | None) -> FailureReason:
    """``MessageFailed.reason_code`` for a send that ended with ``error`` (None: Meta never
    answered), so that no other service interprets Meta's codes."""
    if error is None:
        return "not_sent"
    if error.code in TEMPLATE_UNUSABLE:
        return "template_unusable"
    action = classify(error.code)
    if action is Action.WINDOW:
        return "window_closed"
    if action is Action.MARKETING_STOPPED:
        return "marketing_opted_out"
    if action is Action.PHONE_ONLY:
        return "recipient_unsupported"
    if action is Action.FAIL:
        return "rejected"
    return "temporary"  # retried, backed off, withheld or held until the validity ended


def needs_alert(code: int) -> bool:
    return code in ALERT_CODES or code in CIRCUIT_OF_CODE


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential with "equal jitter": half the step fixed, half random (attempt >= 1)."""
    step = min(cap, base * 2.0 ** max(0, attempt - 1))
    return float(step / 2 + (rng or random.Random()).random() * step / 2)
