"""Meta's error answers to a send, by what they mean (``sender.policy`` says which is which):
retry, back the customer off, open one of the number's circuits, hold the message for a day,
learn what Meta says of the customer or the template, or fail."""

from __future__ import annotations

import logging

from sender.deps import SERVICE
from sender.graph import GraphApiError, MediaGone
from sender.outcomes import Send, fail, hold, retry
from sender.policy import (
    TEMPLATE_STATUS_OF_CODE,
    WITHHELD_FOR,
    Action,
    circuit_of,
    classify,
    explained,
    needs_alert,
)
from sender.signals import refresh_templates
from sender.store import TemplateUpdate
from shared.events import ErrorReported, FailureReason, MetaError, TemplateContent, stable_id
from shared.logs import fields

log = logging.getLogger("mensajero.sender")

# What a circuit's report says, by kind: the error type, what happened, and what to do.
CIRCUIT_REPORTS = {
    "token": (
        "meta_access_token",
        "Meta rejected the access token of number {number} ({error}).",
        "renew META_WA_ACCESS_TOKEN and restart",
    ),
    "payment": (
        "meta_payment",
        "Meta refused to send for number {number}: a problem with the account's payment"
        " method ({error}).",
        "fix the payment method in Business Manager",
    ),
}


async def on_api_error(
    send: Send, error: GraphApiError, attempts: int, used_fallback: bool
) -> None:
    meta = error.to_meta_error()
    action = classify(error.code)
    await circuits_work(send, action, circuit_of(error.code) if action is Action.CIRCUIT else None)
    if isinstance(error, MediaGone):
        # Not a bug, no alert: the user's media was deleted or is older than Meta keeps it.
        reason = (
            f"the media to copy ({error.media_id}) is unknown to Meta or has expired"
            f" (inbound media lasts 7 days): {error}"
        )
        await fail(send, reason, meta, code=str(error.code))
    elif action is Action.CIRCUIT:
        await _open_circuit(send, error, meta, circuit_of(error.code))
    elif action is Action.PAIR_BACKOFF:
        await _back_off_recipient(send, error, meta)
    elif action is Action.RETRY:
        await retry(send, str(error), meta, attempts, label=str(error.code))
    elif action is Action.WINDOW:
        await fail(send, _window_reason(send, used_fallback), meta, code=str(error.code))
    elif action is Action.NOT_TODAY:
        await _withhold(send, error, meta)
    else:
        if action is Action.MARKETING_STOPPED:
            await _stopped_marketing(send)
        await _learn_template(send, error.code, used_fallback)
        reason = f"Meta error {error.code} {meta.title or ''}".strip()
        if meta.details:
            reason += f": {meta.details}"
        meaning = explained(error.code)
        if meaning is not None:
            reason += f" ({meaning})"
        await fail(send, reason, meta, code=str(error.code), alert=needs_alert(error.code))


async def circuits_work(send: Send, answer: Action | None, failing: str | None = None) -> None:
    """Meta answered (``answer`` None: it accepted the send; else an error, of circuit kind
    ``failing`` when it is one): the circuits it proves working close. Any answer but a token
    failure proves the token; only an acceptance proves the payment method."""
    deps, number = send.deps, send.number
    for kind, circuit in deps.circuits.not_closed(number):
        works = answer is None or (kind == "token" and failing != "token")
        if not works or not circuit.worked():
            continue
        deps.metrics.circuit_state(number, kind, circuit.value)
        log.warning(
            "the number's circuit closed: sending resumed", extra=fields(number=number, kind=kind)
        )
        try:
            await deps.store.close_circuit(number, kind)
        except Exception as error:  # the next start probes at once, and closes it then
            log.warning(
                "could not record the circuit closed",
                extra=fields(number=number, kind=kind, error=str(error)),
            )


async def fallback_allowed(send: Send, fallback: TemplateContent, error: GraphApiError) -> bool:
    """Whether the fallback template may go instead (131047); when not, the command failed."""
    deps = send.deps
    refusal = deps.templates.refusal(fallback)
    marketing = send.marketing_stopped and deps.templates.is_marketing(fallback)
    if refusal is None and not marketing:
        return True
    why = refusal or "it is a marketing template and the customer stopped marketing messages"
    meaning: FailureReason = "template_unusable" if refusal is not None else "marketing_opted_out"
    reason = (
        f"outside the 24-hour customer service window (131047); fallback template not sent: {why}"
    )
    await fail(send, reason, error.to_meta_error(), code=meaning, meaning=meaning)
    return False


async def _open_circuit(send: Send, error: GraphApiError, meta: MetaError, kind: str) -> None:
    deps, number = send.deps, send.number
    circuit = deps.circuits.for_number(number, kind)
    opened = circuit.failed()
    deps.metrics.circuit_state(number, kind, circuit.value)
    await deps.store.release(send.command_id, f"{kind} failure: {error}", meta)
    if opened:
        log.error(
            "Meta refuses the number's messages: holding every one of them",
            extra=fields(number=number, kind=kind, code=error.code, error=str(error)),
        )
    incident = await deps.store.open_circuit(number, str(error), kind)
    if incident is not None:
        await deps.publish(_circuit_report(number, kind, incident, error, meta))
    deps.metrics.retries.labels(number, str(error.code)).inc()
    hold(send, f"{kind} failure ({error.code})", deps.config.probe_seconds)


def _circuit_report(
    number: str, kind: str, incident: int, error: GraphApiError, meta: MetaError
) -> ErrorReported:
    error_type, what, act = CIRCUIT_REPORTS[kind]
    # The token's report keeps the id it had before circuits had kinds.
    parts = ("circuit", number) if kind == "token" else ("circuit", kind, number)
    return ErrorReported(
        event_id=stable_id(SERVICE, *parts, str(incident)),
        service=SERVICE,
        error_type=error_type,
        message=(
            what.format(number=number, error=error)
            + " Sending is on hold for that number: messages stay queued and go out when a"
            f" probe succeeds ({act})."
        ),
        meta_code=error.code,
        phone_number_id=number,
        details={"title": meta.title, "details": meta.details},
    )


async def _back_off_recipient(send: Send, error: GraphApiError, meta: MetaError) -> None:
    deps, cfg = send.deps, send.deps.config
    left = await deps.store.backoff_recipient(
        send.number, send.to, cfg.pair_backoff_unit, cfg.backoff_max
    )
    await deps.store.release(send.command_id, str(error), meta)
    deps.metrics.retries.labels(send.number, str(error.code)).inc()
    hold(send, f"pair rate limit ({error.code})", left * (1 + deps.rng.random() / 4))


async def _withhold(send: Send, error: GraphApiError, meta: MetaError) -> None:
    """Meta withheld it to keep the ecosystem healthy: not again before WITHHELD_FOR."""
    deps = send.deps
    not_before = deps.clock() + WITHHELD_FOR
    if send.valid_until <= not_before:
        reason = (
            f"Meta withheld it ({error}) and it may not be sent again before "
            f"{not_before.isoformat()}, after its validity ends"
        )
        await fail(send, reason, meta, code=str(error.code))
        return
    reason = f"withheld by Meta until {not_before.isoformat()} ({error.code})"
    await deps.store.release(send.command_id, reason, meta, not_before=not_before)
    deps.metrics.retries.labels(send.number, str(error.code)).inc()
    hold(send, reason, WITHHELD_FOR.total_seconds())


async def _stopped_marketing(send: Send) -> None:
    """131050: the customer stopped marketing messages; later ones are refused before Meta
    (whichever of their identifiers addresses them: the store reads all they are linked to)."""
    await send.deps.store.set_marketing(
        [send.to], stopped=True, at=send.deps.clock(), source="meta_131050"
    )


async def _learn_template(send: Send, code: int, used_fallback: bool) -> None:
    """An answer that says the template is paused or disabled: later sends are refused first."""
    status = TEMPLATE_STATUS_OF_CODE.get(code)
    content = send.command.fallback_template if used_fallback else send.command.content
    if status is None or not isinstance(content, TemplateContent):
        return
    update = TemplateUpdate(
        name=content.name,
        language=content.language,
        template_id=None,
        at=send.deps.clock(),
        status=status,
    )
    if await send.deps.store.save_template(update):
        await refresh_templates(send.deps)


def _window_reason(send: Send, used_fallback: bool) -> str:
    return (
        "outside the 24-hour customer service window (131047)"
        + ("; the fallback template failed too" if used_fallback else "")
        + ("" if send.command.fallback_template else " and the command has no fallback template")
    )
