"""A case's timers (durable, ``shared.timers``; the subject is the case code): nobody claimed a
queued case within the queue timeout, or an active case had no message either way for the idle
timeout; its customer waited too long for an answer (``reply_timeout``), or its rating's
deadline came (``ratings``)."""

from __future__ import annotations

from handoff.cases import close_case, unattended
from handoff.delivery import to_customer
from handoff.options import options_for
from handoff.outcome import Turn
from handoff.ratings import on_rating_timer
from handoff.reply_timeout import on_reply_timer
from handoff.texts import say
from shared.timers import Timer


async def on_timer(turn: Turn, timer: Timer) -> None:
    if timer.kind == "reply":
        await on_reply_timer(turn, timer)
        return
    if timer.kind == "rating":
        await on_rating_timer(turn, timer)
        return
    repo = turn.repo
    case = await repo.get_case(timer.subject)
    if case is None or case.state == "closed":
        return
    conv = await repo.get_conversation(case.customer)
    if conv is None:
        return
    profile = turn.config.profiles.by_id(case.profile_id)
    options = options_for(profile)
    if timer.kind == "queue" and case.state == "queued":
        await unattended(turn, profile, case, conv, "timeout")
        if options.on_queue_timeout == "bot":
            text = say(profile, "handoff.customer.queue_timeout")
            to_customer(turn.out, conv, text, "qt")
            await close_case(turn, case, conv, "timeout")
        else:
            text = say(profile, "handoff.customer.queue_timeout_wait")
            to_customer(turn.out, conv, text, "qt-wait")
    elif timer.kind == "idle" and case.state == "active":
        due = case.last_activity_at + turn.config.idle_timeout_for(options)
        if due > turn.out.now:  # activity since it was scheduled
            await repo.schedule(case.code, "idle", due)
            return
        await close_case(turn, case, conv, "idle")
    await repo.save_conversation(conv)
