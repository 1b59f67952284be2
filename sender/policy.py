"""What to do with each Meta error code (the table in the Cloud API notes). Pure."""

from __future__ import annotations

import random
from enum import Enum

from shared.events import FailureReason, MetaError


class Action(Enum):
    RETRY = "retry"  # temporary: backoff through the retry tiers, up to the validity period
    PAIR_BACKOFF = "pair_backoff"  # 131056: back off this recipient only
    WINDOW = "window"  # 131047: fallback template, else failed
    TOKEN = "token"  # 190 / 0: hold every message of the number, alert, probe
    FAIL = "fail"  # permanent


RETRYABLE = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131057, 133004})
TOKEN_CODES = frozenset({0, 190})
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


def classify(code: int) -> Action:
    if code in TOKEN_CODES:
        return Action.TOKEN
    if code == 131056:
        return Action.PAIR_BACKOFF
    if code == 131047:
        return Action.WINDOW
    if code in RETRYABLE:
        return Action.RETRY
    return Action.FAIL


def failure_reason(error: MetaError | None) -> FailureReason:
    """``MessageFailed.reason_code`` for a send that ended with ``error`` (None: Meta never
    answered), so that no other service interprets Meta's codes."""
    if error is None:
        return "not_sent"
    action = classify(error.code)
    if action is Action.WINDOW:
        return "window_closed"
    if action is Action.FAIL:
        return "rejected"
    return "temporary"  # retried, backed off or held until the validity ended


def needs_alert(code: int) -> bool:
    return code in ALERT_CODES or code in TOKEN_CODES


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential with "equal jitter": half the step fixed, half random (attempt >= 1)."""
    step = min(cap, base * 2.0 ** max(0, attempt - 1))
    return float(step / 2 + (rng or random.Random()).random() * step / 2)
