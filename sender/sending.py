"""Sending one command: ``handle_send`` takes a :class:`SendMessage` through its steps.

validate (pure: a broken rule fails at once, no API call) -> a template Meta paused, disabled or
rejected is refused -> the number's circuits (held while one is open) -> the customer's pair
limit (held when over it) -> **claim** the message log row (the idempotency record: ``sending``,
with a lease; it also says whether the customer backs off, stopped marketing messages, or Meta
withheld the message for a day) -> the try itself (``sender.attempt``: upload, send slot, POST)
-> record Meta's answer and publish the result.

Idempotency: the log row is claimed before the call and marked ``accepted`` with the wamid right
after Meta's answer; a redelivered command finds it and only re-publishes the result
(deterministic event ids). When an answer is lost (a timeout, a crash, a cancelled call) the
try's claim is kept until Meta's status webhook, which names the command, can tell the log (see
``sender.statuses``); sender/README.md, Idempotency, has the whole story.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from sender.attempt import SlotWait, try_send
from sender.customers import link
from sender.deps import Deps
from sender.outcomes import Send, expire, fail, hold, republish
from sender.recipients import normalise_recipient
from sender.store import ACCEPTED_RANK, PATIENT_CLAIM_SECONDS, Claim, NewMessage
from sender.validation import Invalid, Prepared, prepare
from shared.bus import RetryLater
from shared.events import SendMessage, TemplateContent

# Why a number's messages wait, by circuit kind (sender.circuits).
HELD_BY = {
    "token": "the number's access token is failing; waiting for it to work",
    "payment": "the account's payment method is failing; waiting for it to work",
}


async def handle_send(deps: Deps, command: SendMessage, attempt: int = 1) -> None:
    number = command.phone_number_id or deps.config.default_number
    now = deps.clock()
    if attempt == 1:
        age = (now - command.occurred_at).total_seconds()
        deps.metrics.number(number).queue_age.observe(max(age, 0.0))
    prepared = prepare(command)
    send = _new_send(deps, command, number, prepared)
    if isinstance(prepared, Invalid):
        await fail(send, f"invalid command: {prepared.reason}", None, code="validation")
        return
    if now >= send.valid_until:
        await expire(send)
        return
    content = command.content
    refusal = deps.templates.refusal(content) if isinstance(content, TemplateContent) else None
    if refusal is not None:
        await fail(send, refusal, None, code="template_unusable", meaning="template_unusable")
        return
    if prepared.to_phone is not None and prepared.to_bsuid:
        await link(deps.store, deps.customers, [prepared.to_phone, prepared.to])
        send.customer = deps.customers.key(send.to)
    kind, circuit = deps.circuits.holding(number)
    is_probe, held_for = circuit.admit()
    deps.metrics.circuit_state(number, kind, circuit.value)
    if held_for > 0:
        deps.metrics.retries.labels(number, "circuit_open").inc()
        hold(send, HELD_BY[kind], held_for)
    try:
        await _send(send, prepared)
    finally:
        if is_probe:
            circuit.probe_abandoned()
            deps.metrics.circuit_state(number, kind, circuit.value)


def _new_send(deps: Deps, command: SendMessage, number: str, prepared: Prepared | Invalid) -> Send:
    valid_until = command.valid_until or (
        command.occurred_at + timedelta(seconds=deps.config.validity_seconds)
    )
    to = prepared.to if isinstance(prepared, Prepared) else _recipient(command)
    kind = command.content.kind
    content = command.content
    marketing = deps.templates.is_marketing(
        content if isinstance(content, TemplateContent) else None
    )
    return Send(
        deps=deps,
        command=command,
        number=number,
        to=to,
        kind=kind,
        record=NewMessage(
            command_id=command.event_id,
            phone_number_id=number,
            recipient=to,
            kind=kind,
            command_json=command.model_dump_json(),
            valid_until=valid_until,
            marketing=marketing or deps.templates.is_marketing(command.fallback_template),
        ),
        valid_until=valid_until,
        marketing=marketing,
        customer=deps.customers.key(to),
    )


def _recipient(command: SendMessage) -> str:
    try:
        return normalise_recipient(command.to) if command.to else ""
    except ValueError:
        return command.to


async def _send(send: Send, prepared: Prepared) -> None:
    paired = prepared.is_message
    if paired:
        _take_pair_token(send)
    pacer = send.deps.pacers.for_number(send.number)
    # The slot is reserved while the claim is made (one round trip less before the call); a
    # slot not used after all goes back to the pacer (or is lost when it came too late).
    early = prepared.upload is None
    # Sends queued for the number's slots: this one's claim has time to share a statement.
    patient = early and pacer.queued_seconds() > 5 * PATIENT_CLAIM_SECONDS
    slot = SlotWait(send.deps, send.number, pacer, early=early)
    claim = await _claim(send, slot, paired=paired, patient=patient)
    if claim is not None:
        await try_send(send, prepared, claim, slot)


def _take_pair_token(send: Send) -> None:
    deps, number = send.deps, send.number
    wait = deps.pairs.take(number, send.customer)
    if wait > 0:
        deps.metrics.rate_limit_wait.labels(number, "pair").observe(wait)
        deps.metrics.retries.labels(number, "pair_limit").inc()
        hold(send, "recipient pair limit", wait)


def _not_now(send: Send, slot: SlotWait, paired: bool) -> None:
    """This try does not send now: its slot and the customer's pair token go back."""
    slot.drop()
    if paired:
        send.deps.pairs.give_back(send.number, send.customer)


async def _claim(send: Send, slot: SlotWait, *, paired: bool, patient: bool) -> Claim | None:
    """The log row, ours for this try; None when the command is settled (its outcome published
    again, or failed now). Raises RetryLater while another try has it, the customer backs off
    or Meta withheld the message."""
    deps, number = send.deps, send.number
    send.lease_ends = time.monotonic() + deps.config.lease_seconds
    try:
        claim = await _claim_or_give_back(send, patient)
    except BaseException:
        slot.drop()
        raise
    if claim.outcome != "claimed":
        _not_now(send, slot, paired)
        await _not_claimed(send, claim)
        return None
    if claim.customer is not None:
        deps.customers.learn([send.to], claim.customer)
    if claim.backoff_left > 0:
        _not_now(send, slot, paired)
        await deps.store.release(send.command_id, "recipient backoff (131056)", None)
        deps.metrics.rate_limit_wait.labels(number, "pair").observe(claim.backoff_left)
        hold(send, "recipient is backing off after 131056", claim.backoff_left)
    if claim.not_before is not None and claim.not_before > deps.clock():
        _not_now(send, slot, paired)
        await _withheld(send, claim)
    send.marketing_stopped = claim.marketing_stopped
    if claim.marketing_stopped and send.marketing:
        _not_now(send, slot, paired)
        await _opted_out(send)
        return None
    if claim.taken_over:
        slot.drop()  # not sending yet: a slot is acquired later
        if await _settled_meanwhile(send, paired):
            return None
    return claim


async def _claim_or_give_back(send: Send, patient: bool) -> Claim:
    """The claim. A try cancelled while its claim is being made (the broker connection went)
    still learns what the statement did, and gives back a row it took: it never sent, and its
    redelivery would otherwise wait for the whole lease, then the takeover's wait."""
    deps = send.deps
    claiming = asyncio.ensure_future(
        deps.store.claim(send.record, deps.config.lease_seconds, patient=patient)
    )
    try:
        return await asyncio.shield(claiming)
    except asyncio.CancelledError:
        await asyncio.shield(_give_back(send, claiming))
        raise


async def _give_back(send: Send, claiming: asyncio.Future[Claim]) -> None:
    try:
        claim = await claiming
    except Exception:  # the claim failed: nothing was taken
        return
    # A row taken over from a try that may have reached Meta keeps its claim: given back as
    # pending, the next try would no longer know to wait for that try's status.
    if claim.outcome == "claimed" and not claim.taken_over:
        await send.deps.store.release(send.command_id, "interrupted", None)


async def _not_claimed(send: Send, claim: Claim) -> None:
    """Settled before (its outcome is published again), or another try has it (RetryLater)."""
    deps, row = send.deps, claim.row
    if row is not None and (row.status_rank >= ACCEPTED_RANK):
        deps.metrics.duplicates.labels(send.number).inc()
        await republish(send, row)
        return
    lease = row.lease_left if row is not None else 1.0
    deps.metrics.retries.labels(send.number, "busy").inc()
    raise RetryLater("another try of this command is in flight", max(lease, 0.05))


async def _withheld(send: Send, claim: Claim) -> None:
    """Meta withheld the message (131049) and it may not go again yet: held until then."""
    assert claim.not_before is not None
    reason = f"withheld by Meta until {claim.not_before.isoformat()} (131049)"
    await send.deps.store.release(send.command_id, reason, None)
    send.deps.metrics.retries.labels(send.number, "withheld").inc()
    hold(send, reason, (claim.not_before - send.deps.clock()).total_seconds())


async def _opted_out(send: Send) -> None:
    reason = (
        "the customer stopped marketing messages from this business: the marketing template "
        "was not sent (it can go once they resume them)"
    )
    await fail(send, reason, None, code="marketing_opted_out", meaning="marketing_opted_out")


async def _settled_meanwhile(send: Send, paired: bool) -> bool:
    """This try took over from one that stopped mid-way, whose request Meta may have. Give its
    status webhook (which names the command) time to arrive before sending again; True when it
    did, and the outcome was published again instead."""
    deps = send.deps
    await asyncio.sleep(deps.config.unknown_outcome_seconds)
    row = await deps.store.get(send.command_id)
    if row is None or row.status_rank < ACCEPTED_RANK:
        return False
    if paired:
        deps.pairs.give_back(send.number, send.customer)
    deps.metrics.duplicates.labels(send.number).inc()
    await republish(send, row)
    return True
