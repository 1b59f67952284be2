"""Webhooks to the business: Meta's payload shape, the signature, and a background dispatcher.

The dispatcher keeps status updates in a heap by due time, posts the ones due together in one
signed POST (up to `webhook_max_batch`), and retries a POST not answered 200 with exponential
backoff, as Meta does. Scheduling only pushes onto the heap, so the Graph API path never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import random
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from sandbox.config import SandboxConfig
from sandbox.errors import status_error
from sandbox.faults import DeliveryFaults
from sandbox.payloads import contact, envelope, recipient_fields, status_item
from sandbox.people import Person

log = logging.getLogger("sandbox.webhooks")

SIGNATURE_HEADER = "X-Hub-Signature-256"


def meta_json(payload: Any) -> bytes:
    """JSON written the way Meta writes webhook bodies: compact, `\\uXXXX` escapes, `\\/`."""
    body = orjson.dumps(payload)
    if not body.isascii():
        body = json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    # "/" only ever appears inside JSON strings, where "\/" is a valid escape.
    return body.replace(b"/", b"\\/")


def sign(body: bytes, secret: str) -> str:
    """`sha256=<hex HMAC-SHA256 of the exact body bytes>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class SendStatuses:
    """What every status update of one accepted send shares."""

    wamid: str
    person: Person
    # Addressed by phone (`to`) rather than by BSUID (`recipient`).
    to_phone: bool
    pricing: dict[str, Any]
    conversation: dict[str, Any] | None = None
    biz_opaque_callback_data: str | None = None


Planned = tuple[float, dict[str, Any], dict[str, Any] | None]


def plan_statuses(
    send: SendStatuses,
    delays: tuple[float, float, float],
    faults: DeliveryFaults,
    rng: random.Random,
    *,
    failure_code: int | None = None,
) -> list[Planned]:
    """The status updates of one accepted send: (delay in seconds, status, its contact)."""
    if faults.drop:
        return []
    code = failure_code if failure_code is not None else faults.async_failure_code
    if code is not None:
        failed = status_item(
            send.wamid,
            "failed",
            recipient_fields(send.person, to_phone=send.to_phone, failed=True),
            biz_opaque_callback_data=send.biz_opaque_callback_data,
            errors=[status_error(code)],
        )
        # Meta leaves `contacts` out of failed statuses.
        plan: list[Planned] = [(delays[0], failed, None)]
    else:
        plan = [
            (delay, _delivery_status(send, status), _status_contact(send, status))
            for delay, status in zip(delays, ("sent", "delivered", "read"), strict=True)
            # When the message is read the moment it is delivered, Meta sends only `read`.
            if not (status == "delivered" and delays[2] <= delays[1])
        ]
    if faults.reorder:
        shuffled = [delay for delay, _, _ in plan]
        rng.shuffle(shuffled)
        plan = [(d, item, c) for d, (_, item, c) in zip(shuffled, plan, strict=True)]
    if faults.duplicate:
        plan += [(delay + rng.uniform(0, 0.05), item, c) for delay, item, c in plan]
    return plan


def _delivery_status(send: SendStatuses, status: str) -> dict[str, Any]:
    conversation = send.conversation
    if conversation is not None and status != "sent":
        # Meta gives the conversation's expiration on `sent` only.
        conversation = {k: v for k, v in conversation.items() if k != "expiration_timestamp"}
    return status_item(
        send.wamid,
        status,
        recipient_fields(send.person, to_phone=send.to_phone, failed=False),
        conversation=conversation,
        pricing=send.pricing,
        biz_opaque_callback_data=send.biz_opaque_callback_data,
    )


def _status_contact(send: SendStatuses, status: str) -> dict[str, Any]:
    """The `contacts[]` entry beside a status: the username only on delivered and read."""
    return contact(send.person, username=status != "sent", phone=True if send.to_phone else None)


def merged_contacts(found: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """One contact per user, the fullest one (with the username) when several share a POST."""
    by_user: dict[str, dict[str, Any]] = {}
    for item in found:
        if item is None:
            continue
        kept = by_user.get(item["user_id"])
        if kept is None or "username" in item.get("profile", {}):
            by_user[item["user_id"]] = item
    return list(by_user.values())


@dataclass(slots=True)
class Delivery:
    """One webhook POST and what became of it."""

    id: int
    kind: str
    body: bytes
    created_at: float
    attempts: int = 0
    status: int | None = None
    error: str | None = None
    delivered: bool = False
    attempted_at: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "body": json.loads(self.body),
            "status": self.status,
            "attempts": self.attempts,
            "delivered": self.delivered,
            "error": self.error,
            "created_at": self.created_at,
            "attempted_at": self.attempted_at,
        }


class WebhookDispatcher:
    """Posts status batches and inbound messages to SANDBOX_WEBHOOK_URL, with retries."""

    def __init__(self, config: SandboxConfig, rng: random.Random) -> None:
        self._config = config
        self._rng = rng
        self._heap: list[tuple[float, int, dict[str, Any], bool, dict[str, Any] | None]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._wakeup = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._semaphore = asyncio.Semaphore(config.webhook_concurrency)
        self.log: deque[Delivery] = deque(maxlen=config.webhook_log_max)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._runner = asyncio.create_task(self._run(), name="sandbox-webhook-dispatcher")

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._runner] if self._runner else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._runner = None

    def clear(self) -> None:
        """Forget pending updates and the delivery log (retries in flight are cancelled)."""
        self._heap.clear()
        for task in self._tasks:
            task.cancel()
        self.log.clear()

    @property
    def pending(self) -> int:
        return len(self._heap) + len(self._tasks)

    # -- scheduling ----------------------------------------------------------------------

    def schedule(
        self,
        delay: float,
        item: dict[str, Any],
        *,
        shuffle: bool = False,
        contact: dict[str, Any] | None = None,
    ) -> None:
        """Post this status update after `delay` seconds, batched with others due then.

        `contact` goes into the POST's `contacts[]`; `shuffle` mixes the order of the batch it
        lands in (Meta guarantees no order).
        """
        due = asyncio.get_running_loop().time() + delay
        heapq.heappush(self._heap, (due, next(self._seq), item, shuffle, contact))
        if self._heap[0][2] is item:
            self._wakeup.set()

    async def deliver_now(self, payload: dict[str, Any], kind: str = "messages") -> Delivery:
        """Post a webhook now; retry later in the background when it fails."""
        delivery = self._record(kind, payload)
        delivered = await self._attempt(delivery)
        if not delivered and delivery.attempts < self._config.webhook_max_attempts:
            self._spawn(self._retry(delivery, self._config.webhook_retry_initial_seconds))
        return delivery

    # -- internals -----------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        window = self._config.webhook_batch_window_ms / 1000
        while True:
            if not self._heap:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            wait = self._heap[0][0] - loop.time()
            if wait > 0:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), wait)
                continue
            horizon = loop.time() + window
            batch: list[dict[str, Any]] = []
            contacts: list[dict[str, Any] | None] = []
            shuffle = False
            while (
                self._heap
                and self._heap[0][0] <= horizon
                and len(batch) < self._config.webhook_max_batch
            ):
                _, _, item, mix, contact = heapq.heappop(self._heap)
                batch.append(item)
                contacts.append(contact)
                shuffle = shuffle or mix
            try:
                self._post_batch(batch, merged_contacts(contacts), shuffle)
            except Exception:  # one bad batch must not stop every later webhook
                log.exception("could not post a batch of %d statuses", len(batch))

    def _post_batch(
        self, batch: list[dict[str, Any]], contacts: list[dict[str, Any]], shuffle: bool
    ) -> None:
        stamp = str(int(time.time()))
        statuses = [dict(item, timestamp=stamp) for item in batch]
        if shuffle:
            self._rng.shuffle(statuses)
        value: dict[str, Any] = {"contacts": contacts} if contacts else {}
        self.post("statuses", envelope(self._config, **value, statuses=statuses))

    def post(self, kind: str, payload: dict[str, Any]) -> Delivery:
        """Post a webhook in the background, retried as Meta retries."""
        delivery = self._record(kind, payload)
        self._spawn(self._retry(delivery, 0.0))
        return delivery

    def _record(self, kind: str, payload: dict[str, Any]) -> Delivery:
        delivery = Delivery(next(self._ids), kind, meta_json(payload), time.time())
        self.log.append(delivery)
        return delivery

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retry(self, delivery: Delivery, delay: float) -> None:
        config = self._config
        while True:
            if delay:
                await asyncio.sleep(delay)
            if await self._attempt(delivery) or delivery.attempts >= config.webhook_max_attempts:
                return
            delay = min(
                max(delay * 2, config.webhook_retry_initial_seconds),
                config.webhook_retry_max_seconds,
            )

    async def _attempt(self, delivery: Delivery) -> bool:
        assert self._session is not None, "dispatcher not started"
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "facebookexternalua",
            SIGNATURE_HEADER: sign(delivery.body, self._config.app_secret),
        }
        async with self._semaphore:
            delivery.attempts += 1
            delivery.attempted_at.append(time.time())
            try:
                async with self._session.post(
                    self._config.webhook_url, data=delivery.body, headers=headers
                ) as response:
                    await response.read()
                    delivery.status = response.status
                    delivery.error = None
            except (aiohttp.ClientError, TimeoutError) as exc:
                delivery.status = None
                delivery.error = f"{type(exc).__name__}: {exc}"
        delivery.delivered = delivery.status == 200
        if not delivery.delivered:
            log.info(
                "webhook %s attempt %d to %s failed: %s",
                delivery.id,
                delivery.attempts,
                self._config.webhook_url,
                delivery.error or delivery.status,
            )
        return delivery.delivered
