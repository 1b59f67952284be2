"""What the gateway's routes share: reading a body within a limit, the answer, and the guard
that makes any unforeseen failure a 503 (Meta and SNS retry it), never a 500."""

from __future__ import annotations

import asyncio
import functools
import logging

from aiohttp import web

from gateway.handlers import Answer
from gateway.metrics import Metrics
from shared.logs import fields
from shared.ops import Handler

log = logging.getLogger("mensajero.gateway")

METRICS_KEY = web.AppKey("gateway_metrics", Metrics)
TEXT = "text/plain"


def response(answer: Answer) -> web.Response:
    return web.Response(status=answer.status, text=answer.text, content_type=TEXT)


def refused(answer: Answer, what: str) -> web.Response:
    """The answer to a body that was not read whole: the connection closes after it (what is
    left of the body must not be read as the next request)."""
    log.warning("%s body refused", what, extra=fields(status=answer.status, reason=answer.text))
    answered = response(answer)
    answered.force_close()
    return answered


async def read_body(request: web.Request, limit: int) -> bytes | Answer:
    length = request.content_length
    if length is not None and length > limit:
        return Answer(413, f"body over {limit} bytes", "too_large")
    try:
        # aiohttp stops reading past the app's client_max_size (the larger limit), chunked too.
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return Answer(413, f"body over {limit} bytes", "too_large")
    except web.RequestPayloadError as error:
        # What aiohttp raises for a body it cannot read: a Content-Encoding that does not
        # decode, a broken chunked encoding. The body ends here: otherwise aiohttp reads on
        # after the answer, meets the error again and logs it with a traceback.
        request.content.feed_eof()
        reason = getattr(error.__cause__, "message", None) or str(error)
        return Answer(400, f"body cannot be read: {' '.join(reason.split())[:200]}", "bad_request")
    except (ConnectionError, asyncio.IncompleteReadError):
        return Answer(400, "body truncated", "bad_request")
    if len(body) > limit:
        return Answer(413, f"body over {limit} bytes", "too_large")
    return body


UNFORESEEN = Answer(503, "temporary failure, retry later", "error")


def unforeseen(metrics: Metrics | None, method: str, path: str) -> Answer:
    """The answer to a failure nobody foresaw (called while handling it): logged with its
    traceback, counted for the 5xx alert, 503 (Meta retries it)."""
    log.exception("unexpected failure handling %s %s", method, path)
    if metrics is not None:  # (a guard may serve a bare app)
        metrics.unforeseen(method, path)
    return UNFORESEEN


def _unforeseen(request: web.Request) -> web.Response:
    return response(unforeseen(request.app.get(METRICS_KEY), request.method, request.path))


def guarded(handler: Handler) -> Handler:
    """``handler``, answering 503, never 500, for a bug or a failure nobody foresaw: Meta (and
    SNS) retry a 503, and the webhook is not lost while the cause is fixed.

    Built into each route rather than a middleware: any middleware makes aiohttp wrap every
    request in two more coroutines and look the chain up, measurable at 4,000 webhooks a second.
    """

    @functools.wraps(handler)
    async def guard(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            return _unforeseen(request)

    return guard
