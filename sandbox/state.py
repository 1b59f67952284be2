"""Everything the sandbox remembers, in memory: sends, people, windows, media, limits, faults."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.account import Account
from sandbox.config import SandboxConfig
from sandbox.faults import Faults
from sandbox.ids import IdFactory
from sandbox.limits import PairLimiter, TokenBucket
from sandbox.people import People, Person
from sandbox.templates import TemplateRegistry
from sandbox.validation import ReadReceipt, SendRequest
from sandbox.webhooks import SendStatuses, WebhookDispatcher, plan_statuses

# Meta's free entry point window (a click-to-WhatsApp ad or a Page call to action): 72 hours.
FREE_ENTRY_SECONDS = 72 * 3600


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
        self.people = People(config.waba_id, parent_bsuids=config.parent_bsuids)
        self.account = Account()
        # Templates waiting for their review, by (name, language).
        self.reviews: dict[tuple[str, str], asyncio.TimerHandle] = {}
        # Set on shutdown, so requests hanging under a timeout fault let go.
        self.closing = asyncio.Event()
        self.reset()

    def reset(self) -> None:
        self.token = self.config.access_token
        self.messages: list[dict[str, Any]] = []
        self.read_receipts: list[dict[str, Any]] = []
        for inbox in getattr(self, "inboxes", {}).values():
            inbox.changed.set()
        # Inboxes, windows and conversations are per person (`Person.key`).
        self.inboxes: dict[str, Inbox] = {}
        self.windows: dict[str, float] = {}
        self.conversations: dict[tuple[str, str], tuple[str, float]] = {}
        # Inbound wamid -> the key of the person who wrote it.
        self.inbound: dict[str, str] = {}
        self.media: dict[str, Media] = {}
        # The latest call id with each person (Person.key), for a `terminate` after `connect`.
        self.calls: dict[str, str] = {}
        # Meta's throughput limit as Mensajero defines it: a bucket of `rate` tokens refilled
        # at `rate`/s, full at the start; a send finding it empty is answered 130429 (counted).
        self.throughput = TokenBucket(
            self.config.rate_per_second, max(1.0, self.config.rate_per_second), self.monotonic()
        )
        self.throttled = 0
        self.pairs = PairLimiter(self.config.pair_burst, self.config.pair_interval_seconds)
        self.faults.clear()
        self.dispatcher.clear()
        self.people.clear()
        self.account.clear()
        self.templates.reset()
        for handle in self.reviews.values():
            handle.cancel()
        self.reviews.clear()

    # -- people and windows --------------------------------------------------------------

    def inbox(self, person: Person) -> Inbox:
        inbox = self.inboxes.get(person.key)
        if inbox is None:
            inbox = self.inboxes[person.key] = Inbox()
        return inbox

    def open_window(self, person: Person) -> None:
        self.windows[person.key] = self.clock()

    def window_open(self, person: Person) -> bool:
        opened = self.windows.get(person.key)
        return opened is not None and self.clock() - opened < self.config.window_seconds

    def open_free_entry_point(self, person: Person) -> None:
        person.free_entry_until = self.clock() + FREE_ENTRY_SECONDS

    def fault_scope(self, person: Person) -> str:
        """The identifier the person's faults were set under (phone, BSUID or parent BSUID)."""
        for identifier in (person.phone, person.user_id, person.parent_user_id):
            if identifier and identifier in self.faults.recipients:
                return identifier
        return person.label

    # -- sends ---------------------------------------------------------------------------

    def accept(self, send: SendRequest, person: Person, failure_code: int | None = None) -> str:
        """Record an accepted send, deliver it to the person and schedule its status webhooks.

        `failure_code` accepts the send but fails it asynchronously (as Meta does with 131050).
        """
        now = self.clock()
        wamid = self.ids.wamid(person.wamid_owner, outbound=True)
        self.messages.append(
            {
                "index": len(self.messages),
                "wamid": wamid,
                "to": send.address,
                "user_id": person.user_id,
                "type": send.type,
                "time": now,
                "body": send.body,
            }
        )
        faults = self.faults.for_delivery(self.fault_scope(person))
        if failure_code is None:
            failure_code = faults.async_failure_code
        if failure_code is None:
            record: dict[str, Any] = {
                "wamid": wamid,
                "type": send.type,
                "time": now,
                "body": send.body,
                "context_id": send.context_id,
            }
            if send.template is not None:
                record["template"] = self._template_preview(send)
            self.inbox(person).append(record)

        pricing = self._pricing(send, person, now)
        statuses = SendStatuses(
            wamid,
            person,
            to_phone=send.to is not None,
            pricing=pricing,
            conversation=self._conversation(person, pricing, now),
            biz_opaque_callback_data=send.biz_opaque_callback_data,
        )
        plan = plan_statuses(
            statuses, self.config.status_delays, faults, self._plan_rng, failure_code=failure_code
        )
        for delay, item, contact in plan:
            self.dispatcher.schedule(delay, item, shuffle=faults.reorder, contact=contact)
        return wamid

    def record_read(self, receipt: ReadReceipt) -> None:
        writer = self.people.by_key(self.inbound.get(receipt.message_id, ""))
        self.read_receipts.append(
            {
                "index": len(self.read_receipts),
                "message_id": receipt.message_id,
                "from": writer.label if writer else None,
                "typing_indicator": receipt.typing_indicator,
                "time": self.clock(),
            }
        )

    def _pricing(self, send: SendRequest, person: Person, now: float) -> dict[str, Any]:
        """Per-message pricing (`PMP`, since July 2025), as Meta's status reference gives it."""
        if now < person.free_entry_until:
            category, kind = "referral_conversion", "free_entry_point"
        elif send.template is None:
            category, kind = "service", "free_customer_service"
        else:
            category = send.template.template.category.lower()
            free = category == "utility" and self.window_open(person)
            kind = "free_customer_service" if free else "regular"
        return {
            "billable": kind == "regular",
            "pricing_model": "PMP",
            "category": category,
            "type": kind,
        }

    def _conversation(
        self, person: Person, pricing: dict[str, Any], now: float
    ) -> dict[str, Any] | None:
        """Webhooks from v24.0 have no `conversation`, unless a free entry point window is open
        (then it names the window); v23.0 and older give one per category and 24 h."""
        category = pricing["category"]
        free_entry = pricing["type"] == "free_entry_point"
        if self.config.webhook_major_version >= 24 and not free_entry:
            return None
        current = self.conversations.get((person.key, category))
        if current is None or current[1] <= now:
            expires = person.free_entry_until if free_entry else now + 24 * 3600
            current = (self.ids.hex_id(), expires)
            self.conversations[(person.key, category)] = current
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
