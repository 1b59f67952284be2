"""The sender's handlers: plain functions over ports (Graph API, store, publisher).

``handle_send`` takes one :class:`SendMessage`: validate, hold it while the number's token is
failing or its recipient is over the pair limit, claim it in the message log (the idempotency
record), pace it, call the Graph API, record the answer and publish the result. Retryable
answers put it back through the bus's wait tiers (``RetryLater``) until its validity ends.

``handle_status`` moves a logged message forward on a status webhook and counts each step once.

Idempotency: the log row is claimed (``sending``, with a lease) before the call and marked
``accepted`` with the wamid right after Meta's answer; a redelivered command finds it and only
re-publishes the result (deterministic event ids). The one unavoidable window: the process dies
(or the answer is lost to a timeout) after Meta accepted the request and before the answer was
recorded: the lease then expires and the command is sent again. Meta offers no idempotency key,
so that window is the duration of one HTTP round trip plus one UPDATE (milliseconds), and the
request timeout when Meta accepted a request whose answer never came.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from sender.graph import Accepted, GraphApiError, GraphClient, GraphUnavailable, MediaGone
from sender.metrics import SenderMetrics
from sender.pacing import Circuit, Circuits, NumberPacer, Pacers, PairLimiter
from sender.policy import MAINTENANCE, Action, backoff, classify, failure_reason, needs_alert
from sender.store import (
    ACCEPTED_RANK,
    FAILED_RANK,
    PATIENT_CLAIM_SECONDS,
    RANKS,
    LogRow,
    NewMessage,
    SenderStore,
)
from sender.validation import Invalid, Prepared, Upload, normalise_recipient, prepare
from shared.bus import RetryLater
from shared.events import (
    ErrorReported,
    Event,
    MessageFailed,
    MessageSent,
    MessageStatus,
    MetaError,
    SendMessage,
    stable_id,
)
from shared.logs import fields
from shared.send_ref import SendRef

log = logging.getLogger("mensajero.sender")

Publish = Callable[[Event], Awaitable[None]]
SERVICE = "sender"


@dataclass(frozen=True)
class SenderConfig:
    default_number: str
    validity_seconds: float = 4 * 3600.0
    lease_seconds: float = 30.0
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    pair_backoff_unit: float = 4.0
    probe_seconds: float = 30.0
    orphan_seconds: float = 60.0
    unknown_outcome_seconds: float = 5.0
    request_timeout: float = 10.0
    media_max_bytes: int = 100 * 1024 * 1024


@dataclass
class Deps:
    graph: GraphClient
    store: SenderStore
    publish: Publish
    pacers: Pacers
    pairs: PairLimiter
    circuits: Circuits
    metrics: SenderMetrics
    config: SenderConfig
    rng: random.Random = field(default_factory=random.Random)


@dataclass
class _Send:
    """One handling of one command."""

    deps: Deps
    command: SendMessage
    number: str
    to: str
    kind: str
    record: NewMessage
    valid_until: datetime
    lease_ends: float = 0.0  # monotonic: when another try may take the message over

    @property
    def command_id(self) -> str:
        return self.command.event_id


# --------------------------------------------------------------------------- send


async def handle_send(deps: Deps, command: SendMessage, attempt: int = 1) -> None:
    cfg = deps.config
    number = command.phone_number_id or cfg.default_number
    now = datetime.now(UTC)
    if attempt == 1:
        age = (now - command.occurred_at).total_seconds()
        deps.metrics.number(number).queue_age.observe(max(age, 0.0))
    valid_until = command.valid_until or (
        command.occurred_at + timedelta(seconds=cfg.validity_seconds)
    )
    prepared = prepare(command)
    to = prepared.to if isinstance(prepared, Prepared) else _recipient(command)
    send = _Send(
        deps=deps,
        command=command,
        number=number,
        to=to,
        kind=command.content.kind,
        record=NewMessage(
            command_id=command.event_id,
            phone_number_id=number,
            recipient=to,
            kind=command.content.kind,
            command_json=command.model_dump_json(),
            valid_until=valid_until,
        ),
        valid_until=valid_until,
    )
    if isinstance(prepared, Invalid):
        await _fail(send, f"invalid command: {prepared.reason}", None, code="validation")
        return
    if now >= valid_until:
        await _expire(send)
        return
    circuit = deps.circuits.for_number(number)
    is_probe, hold = circuit.admit()
    deps.metrics.number(number).circuit.set(circuit.value)
    if hold > 0:
        deps.metrics.retries.labels(number, "circuit_open").inc()
        _hold(send, "the number's access token is failing; waiting for it to work", hold)
    try:
        await _send(send, prepared, circuit)
    finally:
        if is_probe:
            circuit.probe_abandoned()
            deps.metrics.circuit.labels(number).set(circuit.value)


def _recipient(command: SendMessage) -> str:
    try:
        return normalise_recipient(command.to) if command.to else ""
    except ValueError:
        return command.to


async def _send(send: _Send, prepared: Prepared, circuit: Circuit) -> None:
    deps, number = send.deps, send.number
    paired = prepared.is_message
    if paired:
        wait = deps.pairs.take(number, send.to)
        if wait > 0:
            deps.metrics.rate_limit_wait.labels(number, "pair").observe(wait)
            deps.metrics.retries.labels(number, "pair_limit").inc()
            _hold(send, "recipient pair limit", wait)

    pacer = deps.pacers.for_number(number)
    # The slot is reserved while the claim is made (one round trip less before the call); a
    # slot not used after all goes back to the pacer (or is lost when it came too late).
    early_slot: asyncio.Future[float] | None = None
    waiting_since = time.monotonic()
    patient = False
    if prepared.upload is None:
        # Sends queued for the number's slots: this one's claim has time to share a statement.
        patient = pacer.queued_seconds() > 5 * PATIENT_CLAIM_SECONDS
        early_slot = pacer.reserve()
    send.lease_ends = time.monotonic() + deps.config.lease_seconds
    try:
        claim = await deps.store.claim(send.record, deps.config.lease_seconds, patient=patient)
    except BaseException:
        _drop(pacer, early_slot)
        raise
    if claim.outcome != "claimed" or claim.backoff_left > 0:
        _drop(pacer, early_slot)
    if claim.outcome != "claimed":
        if paired:
            deps.pairs.give_back(number, send.to)
        row = claim.row
        if row is not None and (row.status_rank >= ACCEPTED_RANK):
            deps.metrics.duplicates.labels(number).inc()
            await _republish(send, row)
            return
        lease = row.lease_left if row is not None else 1.0
        deps.metrics.retries.labels(number, "busy").inc()
        raise RetryLater("another try of this command is in flight", max(lease, 0.05))
    if claim.backoff_left > 0:
        if paired:
            deps.pairs.give_back(number, send.to)
        await deps.store.release(send.command_id, "recipient backoff (131056)", None)
        deps.metrics.rate_limit_wait.labels(number, "pair").observe(claim.backoff_left)
        _hold(send, "recipient is backing off after 131056", claim.backoff_left)

    if claim.taken_over:
        _drop(pacer, early_slot)  # not sending yet: acquire() reserves a new slot later
        early_slot = None
        if await _settled_meanwhile(send, paired):
            return
    used_fallback = claim.used_fallback
    media_id = claim.media_id
    # From the moment a request leaves, Meta may have it, whatever happens to this handler: it
    # is then never released as unsent (the lease, or a status naming this try, settles it).
    reached_meta = False
    started = time.perf_counter()
    # Read receipts have no statuses: nothing to name.
    ref = SendRef(send.command_id, claim.attempts) if paired else None
    try:
        while True:
            try:
                if prepared.upload is not None and media_id is None and not used_fallback:
                    media_id = await _upload(send, prepared.upload)
                    await deps.store.save_media(send.command_id, media_id)
                template = send.command.fallback_template if used_fallback else None
                body = prepared.body(media_id, template=template)
                if early_slot is not None:
                    reserved, early_slot = early_slot, None
                    slot = await reserved
                    if pacer.missed(slot):  # the claim took longer than the slot lasted
                        deps.metrics.missed_slots.labels(number).inc()
                        slot = await pacer.acquire()
                else:
                    waiting_since = time.monotonic()
                    slot = await pacer.acquire()
                waited = time.monotonic() - waiting_since
                if waited > 0.001:
                    deps.metrics.number(number).number_wait.observe(waited)
                reached_meta = True
                started = time.perf_counter()
                try:
                    accepted = await deps.graph.send_message(number, body, ref)
                finally:
                    elapsed = time.perf_counter() - started
                    deps.metrics.number(number).send_latency.observe(elapsed)
            except GraphApiError as error:
                reached_meta = False  # Meta answered with an error: it did not take this one
                if (
                    classify(error.code) is Action.WINDOW
                    and send.command.fallback_template is not None
                    and not used_fallback
                ):
                    _token_works(send, circuit)
                    await deps.store.use_fallback(send.command_id)
                    used_fallback = True
                    log.info(
                        "outside the 24 h window: sending the fallback template",
                        extra=fields(command_id=send.command_id, to=send.to),
                    )
                    continue
                await _on_api_error(send, error, claim.attempts, circuit, used_fallback)
                return
            except GraphUnavailable as error:
                # Meta may have taken it: wait long enough for its status webhook to tell us
                # (see handle_status's adoption) before sending it again.
                await _retry(
                    send,
                    str(error),
                    None,
                    claim.attempts,
                    label="unavailable",
                    at_least=deps.config.unknown_outcome_seconds,
                )
                return
            break
    except asyncio.CancelledError:
        _drop(pacer, early_slot)
        if reached_meta:
            # Meta answers (or the call would have timed out) within the request timeout; its
            # status webhook then names this command: the next try takes over after both.
            cfg = deps.config
            left = max(0.0, cfg.request_timeout - (time.perf_counter() - started))
            hold = left + cfg.unknown_outcome_seconds
            await asyncio.shield(deps.store.interrupted(send.command_id, hold))
        else:  # never left: free the claim for the redelivery
            await asyncio.shield(deps.store.release(send.command_id, "interrupted", None))
        raise
    await _accepted(send, accepted, used_fallback, circuit)


async def _settled_meanwhile(send: _Send, paired: bool) -> bool:
    """This try took over from one that stopped mid-way, whose request Meta may have. Give its
    status webhook (which names the command) time to arrive before sending again; True when it
    did, and the outcome was published again instead."""
    deps = send.deps
    await asyncio.sleep(deps.config.unknown_outcome_seconds)
    row = await deps.store.get(send.command_id)
    if row is None or row.status_rank < ACCEPTED_RANK:
        return False
    if paired:
        deps.pairs.give_back(send.number, send.to)
    deps.metrics.duplicates.labels(send.number).inc()
    await _republish(send, row)
    return True


def _drop(pacer: NumberPacer, slot: asyncio.Future[float] | None) -> None:
    if slot is not None:
        pacer.drop(slot)


async def _upload(send: _Send, upload: Upload) -> str:
    deps = send.deps
    if upload.data is not None:
        data, mime = upload.data, upload.mime_type or "application/octet-stream"
    elif upload.copy_from is not None:
        # Media a user sent: fetched from Meta with the token and uploaded again as ours.
        data, reported = await deps.graph.fetch_media(upload.copy_from, deps.config.media_max_bytes)
        mime = upload.mime_type or reported or "application/octet-stream"
        # Meta reports "audio/ogg; codecs=opus"; the upload's type is the bare MIME type.
        mime = mime.split(";")[0].strip() or "application/octet-stream"
    else:
        assert upload.url is not None
        data, content_type = await deps.graph.download(upload.url, deps.config.media_max_bytes)
        mime = upload.mime_type or content_type or "application/octet-stream"
    return await deps.graph.upload_media(send.number, data, mime, upload.filename)


async def _accepted(send: _Send, accepted: Accepted, used_fallback: bool, circuit: Circuit) -> None:
    deps = send.deps
    # The MessageSent goes to the outbox with the acceptance (one statement, atomic).
    wamid = accepted.wamid
    result = _sent_event(send, wamid, used_fallback) if wamid is not None else None
    await _record_acceptance(send, wamid, result)
    _token_works(send, circuit)
    deps.metrics.number(send.number).accepted(send.kind).inc()


async def _record_acceptance(send: _Send, wamid: str | None, result: MessageSent | None) -> None:
    """Meta took the message: its answer must not be lost to a database that is away for a
    moment (a restart), or the command would be sent again. Tried until the lease is nearly
    over (then the next try, or the message's status, settles it)."""
    deadline = send.lease_ends - 1.0
    delay = 0.1
    while True:
        try:
            await send.deps.store.accepted(send.command_id, wamid, result)
            return
        except Exception as error:
            if time.monotonic() + delay >= deadline:
                raise
            log.warning(
                "could not record Meta's acceptance yet; trying again",
                extra=fields(command_id=send.command_id, wamid=wamid, error=str(error)[:200]),
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


def sent_event_id(command_id: str, used_fallback: bool) -> str:
    """A command's MessageSent id. The fallback template's send has its own: when Meta reports the
    window closed only after accepting the first send (a failed status), both are published."""
    if used_fallback:
        return stable_id(command_id, "accepted", "fallback")
    return stable_id(command_id, "accepted")


def _sent_event(send: _Send, wamid: str, used_fallback: bool) -> MessageSent:
    return MessageSent(
        event_id=sent_event_id(send.command_id, used_fallback),
        correlation_id=send.command.correlation_id or send.command_id,
        command_id=send.command_id,
        wamid=wamid,
        to=send.to,
        phone_number_id=send.number,
        kind=send.kind,
        used_fallback_template=used_fallback,
        biz_opaque_callback_data=send.command.biz_opaque_callback_data,
    )


def _token_works(send: _Send, circuit: Circuit) -> None:
    if circuit.token_worked():
        send.deps.metrics.circuit.labels(send.number).set(circuit.value)
        log.warning("access token works again: sending resumed", extra=fields(number=send.number))
        task = asyncio.get_running_loop().create_task(send.deps.store.close_circuit(send.number))
        _background.add(task)
        task.add_done_callback(_background.discard)


_background: set[asyncio.Task[bool]] = set()


async def _on_api_error(
    send: _Send, error: GraphApiError, attempts: int, circuit: Circuit, used_fallback: bool
) -> None:
    deps, number = send.deps, send.number
    meta = error.to_meta_error()
    action = classify(error.code)
    if action is not Action.TOKEN:
        _token_works(send, circuit)
    if isinstance(error, MediaGone):
        # Not a bug, no alert: the user's media was deleted or is older than Meta keeps it.
        reason = (
            f"the media to copy ({error.media_id}) is unknown to Meta or has expired"
            f" (inbound media lasts 7 days): {error}"
        )
        await _fail(send, reason, meta, code=str(error.code))
    elif action is Action.TOKEN:
        opened = circuit.token_failed()
        deps.metrics.circuit.labels(number).set(circuit.value)
        await deps.store.release(send.command_id, f"token failure: {error}", meta)
        if opened:
            log.error(
                "access token rejected: holding every message of the number",
                extra=fields(number=number, code=error.code, error=str(error)),
            )
        incident = await deps.store.open_circuit(number, str(error))
        if incident is not None:
            await deps.publish(
                ErrorReported(
                    event_id=stable_id(SERVICE, "circuit", number, str(incident)),
                    service=SERVICE,
                    error_type="meta_access_token",
                    message=(
                        f"Meta rejected the access token of number {number} ({error}). "
                        "Sending is on hold for that number: messages stay queued and go out "
                        "when a probe succeeds (renew META_WA_ACCESS_TOKEN and restart)."
                    ),
                    meta_code=error.code,
                    phone_number_id=number,
                    details={"title": meta.title, "details": meta.details},
                )
            )
        deps.metrics.retries.labels(number, str(error.code)).inc()
        _hold(send, f"access token failure ({error.code})", deps.config.probe_seconds)
    elif action is Action.PAIR_BACKOFF:
        left = await deps.store.backoff_recipient(
            number, send.to, deps.config.pair_backoff_unit, deps.config.backoff_max
        )
        await deps.store.release(send.command_id, str(error), meta)
        deps.metrics.retries.labels(number, str(error.code)).inc()
        _hold(send, f"pair rate limit ({error.code})", left * (1 + deps.rng.random() / 4))
    elif action is Action.RETRY:
        await _retry(send, str(error), meta, attempts, label=str(error.code))
    elif action is Action.WINDOW:
        reason = (
            "outside the 24-hour customer service window (131047)"
            + ("; the fallback template failed too" if used_fallback else "")
            + (
                ""
                if send.command.fallback_template
                else " and the command has no fallback template"
            )
        )
        await _fail(send, reason, meta, code=str(error.code))
    else:
        reason = f"Meta error {error.code} {meta.title or ''}".strip()
        if meta.details:
            reason += f": {meta.details}"
        await _fail(send, reason, meta, code=str(error.code), alert=needs_alert(error.code))


async def _retry(
    send: _Send,
    reason: str,
    meta: MetaError | None,
    attempts: int,
    *,
    label: str,
    at_least: float = 0.0,
) -> None:
    deps, cfg = send.deps, send.deps.config
    delay = max(at_least, backoff(attempts, cfg.backoff_base, cfg.backoff_max, deps.rng))
    if meta is not None and meta.code == MAINTENANCE:
        delay = min(delay, 60.0)
    remaining = (send.valid_until - datetime.now(UTC)).total_seconds()
    if remaining <= delay:
        await _fail(
            send,
            f"gave up: the validity period ends before the next try (last error: {reason})",
            meta,
            code=str(meta.code) if meta else "unavailable",
        )
        return
    await deps.store.release(send.command_id, reason, meta)
    deps.metrics.retries.labels(send.number, label).inc()
    log.info(
        "send will be retried",
        extra=fields(command_id=send.command_id, delay=round(delay, 3), reason=reason),
    )
    raise RetryLater(reason, delay)


def _hold(send: _Send, reason: str, delay: float) -> None:
    """Put the command back for ``delay`` (never past its validity: it then fails as expired)."""
    remaining = (send.valid_until - datetime.now(UTC)).total_seconds()
    raise RetryLater(reason, max(0.0, min(delay, remaining + 0.001)))


async def _expire(send: _Send) -> None:
    row = await send.deps.store.get(send.command_id)
    last = row.reason if row is not None else None
    error = row.error if row is not None else None
    reason = "validity period ended before the message could be sent"
    if last:
        reason += f" (last error: {last})"
    await _fail(send, reason, error, code=str(error.code) if error else "expired")


async def _fail(
    send: _Send, reason: str, error: MetaError | None, *, code: str, alert: bool = False
) -> None:
    deps = send.deps
    changed = await deps.store.failed(send.record, reason, error)
    if changed:
        deps.metrics.failed.labels(send.number, send.kind, code).inc()
        log.warning(
            "send failed",
            extra=fields(command_id=send.command_id, to=send.to, reason=reason),
        )
    else:
        row = await deps.store.get(send.command_id)
        if row is not None and row.status_rank != FAILED_RANK:
            await _republish(send, row)  # it went out after all
            return
        if row is not None:
            reason, error = row.reason or reason, row.error or error
    await deps.publish(_failed_event(send, reason, error, None))
    if alert and error is not None:
        await deps.publish(_alert(send.command_id, send.number, reason, error))


def _failed_event(
    send: _Send, reason: str, error: MetaError | None, wamid: str | None
) -> MessageFailed:
    return MessageFailed(
        event_id=stable_id(send.command_id, "failed"),
        correlation_id=send.command.correlation_id or send.command_id,
        command_id=send.command_id,
        to=send.to,
        phone_number_id=send.number,
        kind=send.kind,
        reason=reason,
        reason_code=failure_reason(error),
        error=error,
        wamid=wamid,
    )


def _alert(command_id: str, number: str, reason: str, error: MetaError) -> ErrorReported:
    return ErrorReported(
        event_id=stable_id(command_id, "error"),
        correlation_id=command_id,
        service=SERVICE,
        error_type="meta_send_error",
        message=reason,
        meta_code=error.code,
        phone_number_id=number,
        details={"command_id": command_id, "title": error.title, "details": error.details},
    )


async def _republish(send: _Send, row: LogRow) -> None:
    """A command seen again: publish its recorded outcome again (same event ids)."""
    if row.status == "failed":
        await send.deps.publish(_failed_event(send, row.reason or "failed", row.error, row.wamid))
    elif row.wamid is not None:
        await send.deps.publish(_sent_event(send, row.wamid, row.used_fallback))


# --------------------------------------------------------------------------- statuses


async def _place(deps: Deps, event: MessageStatus) -> Literal["adopted", "ignored", "unknown"]:
    """A status for a wamid the log does not know: whose is it?

    ``adopted``: Meta accepted a send whose answer we never recorded (a timeout, a dropped
    connection, a crash); the wamid is now its message's and the status can be applied.
    ``ignored``: a wamid the message no longer goes by (its fallback template replaced it, or
    Meta took the command twice). ``unknown``: not (yet) ours.
    """
    if await deps.store.superseded(event.wamid):
        log.info(
            "status for a send replaced by another: ignored",
            extra=fields(wamid=event.wamid, status=event.status),
        )
        return "ignored"
    if event.command_id is not None:  # the status names its command and try
        adoption = await deps.store.adopt_sent(event.wamid, event.command_id)
        row = adoption.row
        if adoption.outcome == "duplicate" and row is not None:
            deps.metrics.duplicated.labels(row.phone_number_id, row.kind).inc()
            log.error(
                "Meta accepted one send command twice (an answer was lost and it was sent again)",
                extra=fields(
                    command_id=row.command_id,
                    wamid=row.wamid,
                    extra_wamid=event.wamid,
                    attempt=event.send_attempt,
                ),
            )
            return "ignored"
        if adoption.outcome == "late" and row is not None:
            log.warning(
                "a send that had failed was accepted by Meta after all",
                extra=fields(command_id=row.command_id, wamid=event.wamid),
            )
            return "adopted"
        if adoption.outcome != "adopted" or row is None:
            return "unknown"
    elif event.recipient.wa_id:
        # An untagged status: the recipient's one message with an unknown outcome, if only one.
        recipient = "+" + event.recipient.wa_id.lstrip("+")
        found = await deps.store.adopt(event.wamid, event.phone_number_id, recipient)
        if found is None:
            return "unknown"
        row = found
    else:
        return "unknown"
    log.warning(
        "a send whose answer was lost was accepted by Meta: recorded from its status",
        extra=fields(command_id=row.command_id, wamid=event.wamid, attempt=event.send_attempt),
    )
    await deps.publish(
        MessageSent(
            event_id=sent_event_id(row.command_id, row.used_fallback),
            correlation_id=row.command_id,
            command_id=row.command_id,
            wamid=event.wamid,
            to=row.recipient,
            phone_number_id=row.phone_number_id,
            kind=row.kind,
            used_fallback_template=row.used_fallback,
            biz_opaque_callback_data=event.biz_opaque_callback_data,
        )
    )
    return "adopted"


async def _fall_back_late(deps: Deps, event: MessageStatus, attempt: int) -> bool:
    """131047 in a failed status, after Meta accepted the send (how Meta usually reports it): the
    command's fallback template goes out as for a 131047 answer. True when the status is handled
    so (a retry of this status drives the same send on: it is idempotent)."""
    found = await deps.store.reopen_for_fallback(event.wamid, event.errors[0])
    if found is None:
        return False  # no fallback template (or not logged yet): the usual failed path
    command_json, reopened = found
    command = SendMessage.model_validate_json(command_json)
    if reopened:
        number = command.phone_number_id or deps.config.default_number
        deps.metrics.retries.labels(number, "131047_fallback").inc()
        log.info(
            "outside the 24 h window (reported after acceptance): sending the fallback template",
            extra=fields(command_id=command.event_id, wamid=event.wamid),
        )
    # The send's own path (pacing, pair limit, claim, idempotency); a RetryLater from it puts
    # this status back, and its next try finds the send done or drives it on.
    await handle_send(deps, command, attempt + 1)
    return True


COUNTED = (("sent", RANKS["sent"]), ("delivered", RANKS["delivered"]), ("read", RANKS["read"]))


async def handle_status(deps: Deps, event: MessageStatus, attempt: int = 1) -> None:
    status = event.status
    rank = RANKS.get(status)
    if rank is None or rank <= ACCEPTED_RANK:
        return  # deleted, warning, or something new: nothing to move
    error = event.errors[0] if event.errors else None
    window_closed = error is not None and classify(error.code) is Action.WINDOW
    if status == "failed" and window_closed and await _fall_back_late(deps, event, attempt):
        return
    change = await deps.store.apply_status(event.wamid, status, event.timestamp, error)
    if change is None:
        placed = await _place(deps, event)
        if placed == "ignored":
            return
        if placed == "adopted":
            change = await deps.store.apply_status(event.wamid, status, event.timestamp, error)
    if change is None:
        age = (datetime.now(UTC) - event.occurred_at).total_seconds()
        if age < deps.config.orphan_seconds:
            # It may have raced the log's update with the wamid: look again shortly.
            raise RetryLater("status for a wamid not in the log yet", min(0.25 * attempt, 5.0))
        log.info(
            "status for a message this sender did not log: ignored",
            extra=fields(wamid=event.wamid, status=status),
        )
        return
    row = change.row
    m = deps.metrics
    if change.changed:
        if rank == FAILED_RANK:
            code = str(error.code) if error is not None else "unknown"
            m.failed.labels(row.phone_number_id, row.kind, code).inc()
        else:
            for name, step in COUNTED:
                if change.old_rank < step <= rank:
                    counter = {"sent": m.sent, "delivered": m.delivered, "read": m.read}[name]
                    counter.labels(row.phone_number_id, row.kind).inc()
    if status == "failed" and row.status == "failed":
        reason = row.reason or "failed status webhook"
        command_id = row.command_id
        await deps.publish(
            MessageFailed(
                event_id=stable_id(command_id, "failed"),
                correlation_id=command_id,
                command_id=command_id,
                to=row.recipient,
                phone_number_id=row.phone_number_id,
                kind=row.kind,
                reason=reason,
                reason_code=failure_reason(row.error),
                error=row.error,
                wamid=row.wamid,
            )
        )
        if row.error is not None and needs_alert(row.error.code):
            await deps.publish(_alert(command_id, row.phone_number_id, reason, row.error))
