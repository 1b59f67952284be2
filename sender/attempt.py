"""One try of a claimed send: upload first when asked, wait for the number's send slot, POST,
and record Meta's answer. From the moment a request leaves, Meta may have it whatever happens
to this handler, so such a try is never released as unsent: the lease, or a status naming the
try (``shared.send_ref``), settles it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Literal

from sender.answers import circuits_work, fallback_allowed, on_api_error
from sender.deps import Deps
from sender.graph import Accepted, GraphApiError, GraphUnavailable
from sender.outcomes import Send, retry, sent_event
from sender.pacing import NumberPacer
from sender.policy import Action, classify
from sender.store import Claim
from sender.validation import Prepared, Upload
from shared.events import MessageSent
from shared.logs import fields
from shared.send_ref import SendRef

log = logging.getLogger("mensajero.sender")


class SlotWait:
    """This try's send slot of the number: reserved early (while the claim is made) or
    acquired when the request is ready."""

    def __init__(self, deps: Deps, number: str, pacer: NumberPacer, *, early: bool) -> None:
        self.deps = deps
        self.number = number
        self.pacer = pacer
        self.reserved: asyncio.Future[float] | None = pacer.reserve() if early else None
        self.waiting_since = time.monotonic()

    def drop(self) -> None:
        """Not sending now: a reserved slot goes back to the pacer."""
        if self.reserved is not None:
            self.pacer.drop(self.reserved)
            self.reserved = None

    async def take(self) -> float:
        if self.reserved is not None:
            reserved, self.reserved = self.reserved, None
            slot = await reserved
            if self.pacer.missed(slot):  # the claim took longer than the slot lasted
                self.deps.metrics.missed_slots.labels(self.number).inc()
                slot = await self.pacer.acquire()
        else:
            self.waiting_since = time.monotonic()
            slot = await self.pacer.acquire()
        waited = time.monotonic() - self.waiting_since
        if waited > 0.001:
            self.deps.metrics.number(self.number).number_wait.observe(waited)
        return slot


@dataclass
class _Try:
    claim: Claim
    ref: SendRef | None  # read receipts have no statuses: nothing to name
    used_fallback: bool
    media_id: str | None
    reached_meta: bool = False
    started: float = 0.0  # perf_counter when the request left
    to: str | None = None  # the customer's phone instead of their BSUID (Meta refused it)


async def try_send(send: Send, prepared: Prepared, claim: Claim, slot: SlotWait) -> None:
    state = _Try(
        claim=claim,
        ref=SendRef(send.command_id, claim.attempts) if prepared.is_message else None,
        used_fallback=claim.used_fallback,
        media_id=claim.media_id,
    )
    try:
        accepted = await _until_answered(send, prepared, slot, state)
    except asyncio.CancelledError:
        slot.drop()
        await asyncio.shield(_interrupted(send, state))
        raise
    if accepted is not None:
        await _accepted(send, accepted, state.used_fallback)


async def _until_answered(
    send: Send, prepared: Prepared, slot: SlotWait, state: _Try
) -> Accepted | None:
    """Meta's acceptance; None when its answer was handled otherwise (failed, put back)."""
    while True:
        try:
            return await _post(send, prepared, slot, state)
        except GraphApiError as error:
            state.reached_meta = False  # Meta answered with an error: it did not take this one
            switched = await _switched(send, prepared, error, state)
            if switched == "again":
                continue
            if switched == "failed":
                return None
            await on_api_error(send, error, state.claim.attempts, state.used_fallback)
            return None
        except GraphUnavailable as error:
            # Meta may have taken it: wait long enough for its status webhook to tell us
            # (see sender.statuses, adoption) before sending it again.
            await retry(
                send,
                str(error),
                None,
                state.claim.attempts,
                label="unavailable",
                at_least=send.deps.config.unknown_outcome_seconds,
            )
            return None


async def _post(send: Send, prepared: Prepared, slot: SlotWait, state: _Try) -> Accepted:
    deps = send.deps
    if prepared.upload is not None and state.media_id is None and not state.used_fallback:
        state.media_id = await _upload(send, prepared.upload)
        await deps.store.save_media(send.command_id, state.media_id)
    template = send.command.fallback_template if state.used_fallback else None
    body = prepared.body(state.media_id, template=template, to=state.to)
    await slot.take()
    state.reached_meta = True
    state.started = time.perf_counter()
    try:
        return await deps.graph.send_message(send.number, body, state.ref)
    finally:
        elapsed = time.perf_counter() - state.started
        deps.metrics.number(send.number).send_latency.observe(elapsed)


async def _switched(
    send: Send, prepared: Prepared, error: GraphApiError, state: _Try
) -> Literal["again", "failed", "no"]:
    """Meta refused this form of the message, and there is another to try: the fallback
    template outside the 24 h window (131047), the customer's phone when the message kind cannot
    go to a BSUID (131062). ``again``: the try goes on with it; ``failed``: the other form may
    not go either (the command failed); ``no``: nothing else to try."""
    action = classify(error.code)
    if action is Action.PHONE_ONLY and prepared.to_phone is not None and state.to is None:
        await circuits_work(send, action)
        state.to = prepared.to_phone
        send.deps.metrics.retries.labels(send.number, "bsuid_to_phone").inc()
        log.info(
            "Meta takes no business-scoped user id for this message: sending to the phone",
            extra=fields(command_id=send.command_id, to=send.to),
        )
        return "again"
    fallback = send.command.fallback_template
    if action is not Action.WINDOW or fallback is None or state.used_fallback:
        return "no"
    await circuits_work(send, action)
    if not await fallback_allowed(send, fallback, error):
        return "failed"
    await send.deps.store.use_fallback(send.command_id)
    state.used_fallback = True
    log.info(
        "outside the 24 h window: sending the fallback template",
        extra=fields(command_id=send.command_id, to=send.to),
    )
    return "again"


async def _interrupted(send: Send, state: _Try) -> None:
    deps = send.deps
    if state.reached_meta:
        # Meta answers (or the call would have timed out) within the request timeout; its
        # status webhook then names this command: the next try takes over after both.
        cfg = deps.config
        left = max(0.0, cfg.request_timeout - (time.perf_counter() - state.started))
        await deps.store.interrupted(send.command_id, left + cfg.unknown_outcome_seconds)
    else:  # never left: free the claim for the redelivery
        await deps.store.release(send.command_id, "interrupted", None)


async def _upload(send: Send, upload: Upload) -> str:
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


async def _accepted(send: Send, accepted: Accepted, used_fallback: bool) -> None:
    # The MessageSent goes to the outbox with the acceptance (one statement, atomic).
    wamid = accepted.wamid
    result = sent_event(send, wamid, used_fallback) if wamid is not None else None
    await _record_acceptance(send, wamid, result)
    await circuits_work(send, None)
    send.deps.metrics.number(send.number).accepted(send.kind).inc()


async def _record_acceptance(send: Send, wamid: str | None, result: MessageSent | None) -> None:
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
