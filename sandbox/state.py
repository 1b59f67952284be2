"""Everything the sandbox remembers, in memory: sends, phones, windows, media, limits, faults."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.config import SandboxConfig
from sandbox.faults import Faults
from sandbox.ids import IdFactory
from sandbox.limits import PairLimiter, TokenBucket
from sandbox.templates import TemplateRegistry
from sandbox.validation import ReadReceipt, SendRequest
from sandbox.webhooks import WebhookDispatcher, plan_statuses
from shared.phone import digits


@dataclass(slots=True)
class Media:
    id: str
    data: bytes
    mime_type: str
    sha256: str
    filename: str | None = None


@dataclass(slots=True)
class Inbox:
    """What one phone received from the business, in order."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def append(self, record: dict[str, Any]) -> None:
        record["index"] = len(self.messages)
        self.messages.append(record)
        # Wake the long-polls waiting now; later ones wait on a fresh event.
        self.changed.set()
        self.changed = asyncio.Event()

    def after(self, index: int) -> list[dict[str, Any]]:
        return self.messages[index + 1 :]


class SandboxState:
    """The sandbox's memory. `reset()` forgets everything but the configuration."""

    def __init__(self, config: SandboxConfig, templates: TemplateRegistry) -> None:
        self.config = config
        self.templates = templates
        self.ids = IdFactory(config.seed)
        self.clock: Callable[[], float] = time.time
        self.monotonic: Callable[[], float] = time.monotonic
        self.faults = Faults(
            random.Random(config.seed + 1),
            default_timeout=config.timeout_seconds,
            duplicate_webhooks=config.duplicate_webhooks,
            reorder_webhooks=config.reorder_webhooks,
        )
        self._plan_rng = random.Random(config.seed + 2)
        self.dispatcher = WebhookDispatcher(config, random.Random(config.seed + 3))
        # Set on shutdown, so requests hanging under a timeout fault let go.
        self.closing = asyncio.Event()
        self.reset()

    def reset(self) -> None:
        self.token = self.config.access_token
        self.messages: list[dict[str, Any]] = []
        self.read_receipts: list[dict[str, Any]] = []
        for inbox in getattr(self, "inboxes", {}).values():
            inbox.changed.set()
        self.inboxes: dict[str, Inbox] = {}
        self.windows: dict[str, float] = {}
        self.conversations: dict[tuple[str, str], tuple[str, float]] = {}
        self.inbound: dict[str, str] = {}
        self.media: dict[str, Media] = {}
        # Meta's throughput limit as Mensajero defines it: a bucket of `rate` tokens refilled
        # at `rate`/s, full at the start; a send finding it empty is answered 130429 (counted).
        self.throughput = TokenBucket(
            self.config.rate_per_second, max(1.0, self.config.rate_per_second), self.monotonic()
        )
        self.throttled = 0
        self.pairs = PairLimiter(self.config.pair_burst, self.config.pair_interval_seconds)
        self.faults.clear()
        self.dispatcher.clear()

    # -- phones and windows --------------------------------------------------------------

    def inbox(self, phone: str) -> Inbox:
        inbox = self.inboxes.get(phone)
        if inbox is None:
            inbox = self.inboxes[phone] = Inbox()
        return inbox

    def open_window(self, phone: str) -> None:
        self.windows[phone] = self.clock()

    def window_open(self, phone: str) -> bool:
        opened = self.windows.get(phone)
        return opened is not None and self.clock() - opened < self.config.window_seconds

    # -- sends ---------------------------------------------------------------------------

    def accept(self, send: SendRequest) -> str:
        """Record an accepted send, deliver it to the phone and schedule its status webhooks."""
        now = self.clock()
        recipient_id = digits(send.to)
        wamid = self.ids.wamid(recipient_id, outbound=True)
        self.messages.append(
            {
                "index": len(self.messages),
                "wamid": wamid,
                "to": send.to,
                "type": send.type,
                "time": now,
                "body": send.body,
            }
        )
        faults = self.faults.for_delivery(send.to)
        if faults.async_failure_code is None:
            record: dict[str, Any] = {
                "wamid": wamid,
                "type": send.type,
                "time": now,
                "body": send.body,
                "context_id": send.context_id,
            }
            if send.template is not None:
                record["template"] = self._template_preview(send)
            self.inbox(send.to).append(record)

        category, pricing = self._pricing(send)
        plan = plan_statuses(
            wamid,
            recipient_id,
            self.config.status_delays,
            faults,
            self._plan_rng,
            conversation=self._conversation(send.to, category, now),
            pricing=pricing,
            biz_opaque_callback_data=send.biz_opaque_callback_data,
        )
        for delay, item in plan:
            self.dispatcher.schedule(delay, item, shuffle=faults.reorder)
        return wamid

    def record_read(self, receipt: ReadReceipt) -> None:
        self.read_receipts.append(
            {
                "index": len(self.read_receipts),
                "message_id": receipt.message_id,
                "from": self.inbound.get(receipt.message_id),
                "typing_indicator": receipt.typing_indicator,
                "time": self.clock(),
            }
        )

    def _pricing(self, send: SendRequest) -> tuple[str, dict[str, Any]]:
        if send.template is None:
            category, free = "service", True
        else:
            category = send.template.template.category.lower()
            free = category == "utility" and self.window_open(send.to)
        pricing = {
            "billable": not free,
            "pricing_model": "PMP",
            "category": category,
            "type": "free_customer_service" if free else "regular",
        }
        return category, pricing

    def _conversation(self, phone: str, category: str, now: float) -> dict[str, Any]:
        current = self.conversations.get((phone, category))
        if current is None or current[1] <= now:
            current = (self.ids.hex_id(), now + 24 * 3600)
            self.conversations[(phone, category)] = current
        return {
            "id": current[0],
            "expiration_timestamp": str(int(current[1])),
            "origin": {"type": category},
        }

    @staticmethod
    def _template_preview(send: SendRequest) -> dict[str, Any]:
        assert send.template is not None
        use = send.template
        return {
            "name": use.template.name,
            "language": use.template.language,
            "header": use.template.header,
            "body": use.template.render_body(use.body_params),
            "footer": use.template.footer,
            "buttons": [
                {"type": b.type, "text": b.text, "payload": use.payloads.get(i, b.text)}
                for i, b in enumerate(use.template.buttons)
            ],
        }

    # -- media ---------------------------------------------------------------------------

    def store_media(self, data: bytes, mime_type: str, filename: str | None = None) -> Media:
        media = Media(
            id=self.ids.media_id(),
            data=data,
            mime_type=mime_type,
            sha256=hashlib.sha256(data).hexdigest(),
            filename=filename,
        )
        self.media[media.id] = media
        return media
