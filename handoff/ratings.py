"""The customer's rating at the end: when a case an agent handled closes and the customer's
24-hour window is open, they get a one-tap rating as reply buttons (the profile's texts
``handoff.rating.*``; on unless the profile's ``rating: {enabled: false}``).

The answer is stored with the case once (``settle_rating``: offered -> rated), counted
(``handoff_csat_total{profile, score}``) and sent with the transcript: ``handoff.closed`` waits
for it until the rating's deadline (``HANDOFF_RATING_TIMEOUT_SECONDS``, a durable ``rating``
timer), then goes without it (offered -> expired). A second answer, or one after the deadline,
is thanked and not counted.
"""

from __future__ import annotations

from handoff.closing import EndReason, publish_closed
from handoff.delivery import send, to_customer
from handoff.identities import address
from handoff.options import options_for
from handoff.outcome import Turn
from handoff.repository import Case, Conversation
from handoff.texts import say
from shared.events import ButtonsContent, InboundMessage, ReplyButton
from shared.meta_limits import BUTTON_TITLE_MAX
from shared.profiles import CompanyProfile
from shared.timers import Timer
from shared.window import window_open

RATING_PREFIX = "csat:"  # the buttons' ids: csat:<case code>:<score>
SCORES = (3, 2, 1)


def rating_buttons(profile: CompanyProfile, case: Case) -> ButtonsContent:
    buttons = [
        ReplyButton(
            id=f"{RATING_PREFIX}{case.code}:{score}",
            title=say(profile, f"handoff.rating.score_{score}")[:BUTTON_TITLE_MAX],
        )
        for score in SCORES
    ]
    return ButtonsContent(body=say(profile, "handoff.rating.question"), buttons=buttons)


async def ask_rating(
    turn: Turn, profile: CompanyProfile, case: Case, conv: Conversation, reason: EndReason
) -> bool:
    """Ask the customer of a case closing now for a rating; True when asked (``handoff.closed``
    then waits for the answer or the deadline)."""
    options = options_for(profile)
    out = turn.out
    asked = (
        options.rating.enabled
        and case.agent is not None
        and reason in ("agent", "customer", "idle")
        and window_open(conv.last_inbound_at, out.now)
    )
    if not asked:
        return False
    send(out, address(conv), rating_buttons(profile, case), "rating")
    await turn.repo.offer_rating(case.code)
    deadline = out.now + turn.config.rating_timeout_for(options)
    await turn.repo.schedule(case.code, "rating", deadline)
    return True


def rating_choice(msg: InboundMessage) -> tuple[str, int] | None:
    """The case and score a tapped rating button names."""
    payload = msg.reply.id if msg.reply is not None else None
    if not payload or not payload.startswith(RATING_PREFIX):
        return None
    code, _, score = payload[len(RATING_PREFIX) :].rpartition(":")
    if not code or not score.isdigit() or int(score) not in SCORES:
        return None
    return code, int(score)


async def on_rating_answer(turn: Turn, conv: Conversation, msg: InboundMessage) -> bool:
    """A customer tapped a rating button: stored and counted once, in time. True when ``msg``
    was a rating (the caller does nothing else with it)."""
    choice = rating_choice(msg)
    if choice is None:
        return False
    repo, out = turn.repo, turn.out
    code, score = choice
    case = await repo.get_case(code)
    rating = await repo.rating_of(code)
    if case is None or case.customer != conv.customer or case.closed_at is None or rating is None:
        return True  # not a rating we asked this customer for
    profile = turn.config.profiles.by_id(case.profile_id)
    deadline = case.closed_at + turn.config.rating_timeout_for(options_for(profile))
    if rating.state == "rated":
        key = "already"
    elif rating.state == "expired" or out.now > deadline:
        key = "late"
    elif await repo.settle_rating(code, "rated", score):
        await repo.cancel_timers(code)
        out.fact("csat", profile.id, score)
        label = say(profile, f"handoff.rating.score_{score}")
        await publish_closed(turn, profile, case, conv, rating=score, rating_label=label)
        key = "thanks"
    else:
        key = "late"
    to_customer(out, conv, say(profile, f"handoff.rating.{key}"), f"rating-{key}")
    return True


async def on_rating_timer(turn: Turn, timer: Timer) -> None:
    """The rating's deadline: the transcript goes without it."""
    repo = turn.repo
    case = await repo.get_case(timer.subject)
    if case is None or not await repo.settle_rating(case.code, "expired", None):
        return
    conv = await repo.get_conversation(case.customer)
    assert conv is not None
    await publish_closed(turn, turn.config.profiles.by_id(case.profile_id), case, conv)
