"""Meta's error answers to a send, by what they mean (``sender.policy`` says which is which):
retry, back the recipient off, open the number's circuit, or fail."""

from __future__ import annotations

import logging

from sender.circuits import Circuit
from sender.deps import SERVICE
from sender.graph import GraphApiError, MediaGone
from sender.outcomes import Send, fail, hold, retry
from sender.policy import Action, classify, needs_alert
from shared.events import ErrorReported, MetaError, stable_id
from shared.logs import fields

log = logging.getLogger("mensajero.sender")


async def on_api_error(
    send: Send, error: GraphApiError, attempts: int, circuit: Circuit, used_fallback: bool
) -> None:
    meta = error.to_meta_error()
    action = classify(error.code)
    await circuits_work(send, circuit, action)
    if isinstance(error, MediaGone):
        # Not a bug, no alert: the user's media was deleted or is older than Meta keeps it.
        reason = (
            f"the media to copy ({error.media_id}) is unknown to Meta or has expired"
            f" (inbound media lasts 7 days): {error}"
        )
        await fail(send, reason, meta, code=str(error.code))
    elif action is Action.TOKEN:
        await _open_circuit(send, error, meta, circuit)
    elif action is Action.PAIR_BACKOFF:
        await _back_off_recipient(send, error, meta)
    elif action is Action.RETRY:
        await retry(send, str(error), meta, attempts, label=str(error.code))
    elif action is Action.WINDOW:
        await fail(send, _window_reason(send, used_fallback), meta, code=str(error.code))
    else:
        reason = f"Meta error {error.code} {meta.title or ''}".strip()
        if meta.details:
            reason += f": {meta.details}"
        await fail(send, reason, meta, code=str(error.code), alert=needs_alert(error.code))


async def circuits_work(send: Send, circuit: Circuit, action: Action | None) -> None:
    """Meta answered (``action`` None: it accepted the send) with something other than a token
    failure: the token works, and a circuit held open for it closes."""
    if action is Action.TOKEN or not circuit.worked():
        return
    deps, number = send.deps, send.number
    deps.metrics.circuit.labels(number).set(circuit.value)
    log.warning("access token works again: sending resumed", extra=fields(number=number))
    try:
        await deps.store.close_circuit(number)
    except Exception as error:  # the next start probes at once, and closes it then
        log.warning(
            "could not record the circuit closed", extra=fields(number=number, error=str(error))
        )


async def _open_circuit(
    send: Send, error: GraphApiError, meta: MetaError, circuit: Circuit
) -> None:
    deps, number = send.deps, send.number
    opened = circuit.failed()
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
    hold(send, f"access token failure ({error.code})", deps.config.probe_seconds)


async def _back_off_recipient(send: Send, error: GraphApiError, meta: MetaError) -> None:
    deps, cfg = send.deps, send.deps.config
    left = await deps.store.backoff_recipient(
        send.number, send.to, cfg.pair_backoff_unit, cfg.backoff_max
    )
    await deps.store.release(send.command_id, str(error), meta)
    deps.metrics.retries.labels(send.number, str(error.code)).inc()
    hold(send, f"pair rate limit ({error.code})", left * (1 + deps.rng.random() / 4))


def _window_reason(send: Send, used_fallback: bool) -> str:
    return (
        "outside the 24-hour customer service window (131047)"
        + ("; the fallback template failed too" if used_fallback else "")
        + ("" if send.command.fallback_template else " and the command has no fallback template")
    )
