"""The sender's adapters in memory, for the unit tests of its handlers (tests/sender).

``FakeStore`` behaves as ``sender.pg_store.PostgresStore`` (tests/sender/test_store.py and the
integration tests check that one against PostgreSQL); ``FakeGraphClient`` records every call
and answers from a script, as ``sender.graph.AiohttpGraphClient`` answers from Meta.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from sender.graph import Accepted, GraphApiError, MediaGone, too_large
from sender.store import (
    ACCEPTED_RANK,
    FAILED_RANK,
    PENDING_RANK,
    RANKS,
    SENDING_RANK,
    SENT_RANK,
    Adoption,
    Claim,
    LogRow,
    NewMessage,
    StatusChange,
    TemplateState,
    TemplateUpdate,
    status_reason,
)
from shared.events import Event, MetaError
from shared.send_ref import SendRef

# --------------------------------------------------------------------------- store


@dataclass
class _Row:
    message: NewMessage
    status: str = "pending"
    rank: int = PENDING_RANK
    wamid: str | None = None
    attempts: int = 0
    claimed_until: float = 0.0
    used_fallback: bool = False
    media_id: str | None = None
    reason: str | None = None
    error: MetaError | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    not_before: datetime | None = None
    reason_code: str | None = None
    billed: bool = False

    def view(self) -> LogRow:
        m = self.message
        return LogRow(
            command_id=m.command_id,
            phone_number_id=m.phone_number_id,
            recipient=m.recipient,
            kind=m.kind,
            status=self.status,
            status_rank=self.rank,
            wamid=self.wamid,
            attempts=self.attempts,
            used_fallback=self.used_fallback,
            media_id=self.media_id,
            reason=self.reason,
            error=self.error,
            lease_left=self.claimed_until - time.monotonic() if self.rank == SENDING_RANK else 0.0,
            reason_code=self.reason_code,
        )


@dataclass
class FakeStore:
    """The same semantics in memory (unit tests)."""

    rows: dict[str, _Row] = field(default_factory=dict)
    outbox: list[Event] = field(default_factory=list)  # result events written with a row
    patient_claims: int = 0
    slots: dict[str, float] = field(default_factory=dict)
    circuits: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    backoffs: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)
    superseded_wamids: dict[str, str] = field(default_factory=dict)
    customers: dict[str, str] = field(default_factory=dict)  # identifier: customer key
    # identifier: (stopped, changed_at)
    preferences: dict[str, tuple[bool, datetime]] = field(default_factory=dict)
    template_states: dict[tuple[str, str], TemplateState] = field(default_factory=dict)
    accounts: dict[str, str] = field(default_factory=dict)

    def customer_of(self, identifier: str) -> str:
        return self.customers.get(identifier, identifier)

    def marketing_stopped(self, identifier: str) -> bool:
        customer = self.customer_of(identifier)
        mine = {identifier, *(i for i, c in self.customers.items() if c == customer)}
        said = [self.preferences[i] for i in mine if i in self.preferences]
        return max(said, key=lambda p: p[1])[0] if said else False

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def claim(
        self, message: NewMessage, lease_seconds: float, *, patient: bool = False
    ) -> Claim:
        self.patient_claims += patient
        now = time.monotonic()
        row = self.rows.get(message.command_id)
        if row is None:
            row = self.rows[message.command_id] = _Row(message)
        elif not (
            row.rank == PENDING_RANK or (row.rank == SENDING_RANK and row.claimed_until < now)
        ):
            return Claim("done" if row.rank >= ACCEPTED_RANK else "busy", row.view())
        taken_over = row.rank == SENDING_RANK
        row.status, row.rank, row.attempts = "sending", SENDING_RANK, row.attempts + 1
        row.claimed_until = now + lease_seconds
        customer = self.customer_of(message.recipient)
        until, _ = self.backoffs.get((message.phone_number_id, customer), (0.0, 0))
        return Claim(
            "claimed",
            attempts=row.attempts,
            used_fallback=row.used_fallback,
            media_id=row.media_id,
            backoff_left=max(0.0, until - now),
            taken_over=taken_over,
            customer=customer,
            marketing_stopped=message.marketing and self.marketing_stopped(message.recipient),
            not_before=row.not_before,
        )

    async def get(self, command_id: str) -> LogRow | None:
        row = self.rows.get(command_id)
        return row.view() if row else None

    async def save_media(self, command_id: str, media_id: str) -> None:
        self.rows[command_id].media_id = media_id

    async def use_fallback(self, command_id: str) -> None:
        self.rows[command_id].used_fallback = True

    async def accepted(
        self, command_id: str, wamid: str | None, result: Event | None = None
    ) -> None:
        row = self.rows[command_id]
        if row.rank < ACCEPTED_RANK:
            row.status, row.rank = "accepted", ACCEPTED_RANK
        row.wamid = row.wamid or wamid
        row.timeline.append({"status": "accepted"})
        if result is not None:
            self.outbox.append(result)

    async def release(
        self,
        command_id: str,
        reason: str,
        error: MetaError | None,
        *,
        not_before: datetime | None = None,
    ) -> None:
        row = self.rows[command_id]
        if row.rank == SENDING_RANK:
            row.status, row.rank, row.reason = "pending", PENDING_RANK, reason
            row.error = error or row.error
            row.not_before = not_before or row.not_before

    async def interrupted(self, command_id: str, hold_seconds: float) -> None:
        row = self.rows[command_id]
        if row.rank == SENDING_RANK:
            row.claimed_until = time.monotonic() + hold_seconds

    async def failed(
        self,
        message: NewMessage,
        reason: str,
        error: MetaError | None,
        reason_code: str | None = None,
    ) -> bool:
        row = self.rows.setdefault(message.command_id, _Row(message))
        if row.rank >= ACCEPTED_RANK:
            return False
        row.status, row.rank, row.reason, row.error = "failed", FAILED_RANK, reason, error
        row.reason_code = reason_code
        return True

    async def apply_status(
        self,
        wamid: str,
        status: str,
        at: datetime,
        error: MetaError | None,
        *,
        priced: bool = False,
    ) -> StatusChange | None:
        row = next((r for r in self.rows.values() if r.wamid == wamid), None)
        if row is None:
            return None
        old, rank = row.rank, RANKS[status]
        changed = old < rank
        first_priced = priced and not row.billed
        row.billed = row.billed or priced
        if changed:
            row.status, row.rank = status, rank
            row.error = error or row.error
            if rank == FAILED_RANK:
                row.reason = status_reason(error)
            row.timeline.append({"status": status})
        return StatusChange(row.view(), old, changed, first_priced)

    async def adopt(self, wamid: str, phone_number_id: str, recipient: str) -> LogRow | None:
        found = [
            r
            for r in self.rows.values()
            if r.message.phone_number_id == phone_number_id
            and r.message.recipient == recipient
            and r.wamid is None
            and r.rank in (PENDING_RANK, SENDING_RANK)
            and r.attempts > 0
            and r.message.kind != "mark_read"
        ]
        if len(found) != 1:
            return None
        row = found[0]
        row.wamid, row.status, row.rank = wamid, "accepted", ACCEPTED_RANK
        return row.view()

    async def adopt_sent(self, wamid: str, command_id: str) -> Adoption:
        row = self.rows.get(command_id)
        if row is None or (row.wamid is None and ACCEPTED_RANK <= row.rank < FAILED_RANK):
            return Adoption("none")
        if row.wamid == wamid:
            return Adoption("known", row.view())
        if row.wamid is not None:
            self.superseded_wamids.setdefault(wamid, command_id)
            return Adoption("duplicate", row.view())
        row.wamid = wamid
        if row.rank < ACCEPTED_RANK:
            row.status, row.rank = "accepted", ACCEPTED_RANK
            return Adoption("adopted", row.view())
        return Adoption("late", row.view())

    async def reopen_for_fallback(self, wamid: str, error: MetaError) -> tuple[str, bool] | None:
        reopened = False
        row = next((r for r in self.rows.values() if r.wamid == wamid), None)
        if row is not None and not row.used_fallback and row.rank in (ACCEPTED_RANK, SENT_RANK):
            command = orjson.loads(row.message.command_json)
            if isinstance(command.get("fallback_template"), dict):
                row.status, row.rank, row.wamid, row.error = "pending", PENDING_RANK, None, error
                row.used_fallback = reopened = True
                self.superseded_wamids[wamid] = row.message.command_id
        command_id = self.superseded_wamids.get(wamid)
        return (self.rows[command_id].message.command_json, reopened) if command_id else None

    async def superseded(self, wamid: str) -> bool:
        return wamid in self.superseded_wamids

    async def reserve_slots(
        self, phone_number_id: str, count: int, rate: float, backdate: float
    ) -> tuple[float, float]:
        now = time.time()
        start = max(self.slots.get(phone_number_id, 0.0), now - backdate)
        self.slots[phone_number_id] = start + count / rate
        return start, now

    async def open_circuit(
        self, phone_number_id: str, reason: str, kind: str = "token"
    ) -> int | None:
        state, incident = self.circuits.get((phone_number_id, kind), ("closed", 0))
        if state == "open":
            return None
        self.circuits[(phone_number_id, kind)] = ("open", incident + 1)
        return incident + 1

    async def close_circuit(self, phone_number_id: str, kind: str = "token") -> bool:
        state, incident = self.circuits.get((phone_number_id, kind), ("closed", 0))
        self.circuits[(phone_number_id, kind)] = ("closed", incident)
        return state == "open"

    async def open_circuits(self) -> list[tuple[str, str]]:
        return [key for key, (state, _) in self.circuits.items() if state == "open"]

    async def backoff_recipient(
        self, phone_number_id: str, recipient: str, unit: float, cap: float
    ) -> float:
        now = time.monotonic()
        key = (phone_number_id, self.customer_of(recipient))
        until, strikes = self.backoffs.get(key, (0.0, 0))
        strikes = strikes + 1 if until > now - cap else 1
        delay = float(min(cap, unit * 4.0 ** (strikes - 1)))
        self.backoffs[key] = (now + delay, strikes)
        return delay

    async def link_customer(self, identifiers: Sequence[str]) -> str:
        found = sorted({self.customers[i] for i in identifiers if i in self.customers})
        chosen = self.customers.get(identifiers[0]) or (found[0] if found else identifiers[0])
        for identifier, customer in list(self.customers.items()):
            if customer in found:
                self.customers[identifier] = chosen
        for identifier in [*identifiers, chosen]:
            self.customers[identifier] = chosen
        return chosen

    async def set_marketing(
        self, identifiers: Sequence[str], *, stopped: bool, at: datetime, source: str
    ) -> None:
        for identifier in identifiers:
            known = self.preferences.get(identifier)
            if known is None or at >= known[1]:
                self.preferences[identifier] = (stopped, at)

    async def save_template(self, update: TemplateUpdate) -> bool:
        if update.name is None or update.language is None:
            return False
        key = (update.name, update.language)
        known = self.template_states.get(key) or TemplateState(key[0], key[1], None, None, None)
        self.template_states[key] = TemplateState(
            name=key[0],
            language=key[1],
            status=update.status or known.status,
            category=update.category or known.category,
            quality=update.quality or known.quality,
            template_id=update.template_id or known.template_id,
        )
        return True

    async def templates(self, now: datetime) -> list[TemplateState]:
        return list(self.template_states.values())

    async def set_account_state(self, waba_id: str, state: str, event: str, at: datetime) -> None:
        self.accounts[waba_id] = state

    async def account_states(self) -> list[str]:
        return list(self.accounts.values())


# --------------------------------------------------------------------------- Graph API


@dataclass
class FakeGraphClient:
    """In memory: records every call; ``script`` holds outcomes for the next sends."""

    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    refs: list[SendRef | None] = field(default_factory=list)  # the ref of each send
    uploads: list[tuple[str, bytes, str]] = field(default_factory=list)
    script: deque[Exception | None] = field(default_factory=deque)
    downloads: dict[str, tuple[bytes, str | None]] = field(default_factory=dict)
    # Media at Meta by id (what ``fetch_media`` copies), and outcomes for the next fetches.
    media: dict[str, tuple[bytes, str | None]] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)
    fetch_script: deque[Exception | None] = field(default_factory=deque)
    upload_script: deque[Exception | None] = field(default_factory=deque)
    delay: float = 0.0
    templates: list[dict[str, Any]] = field(default_factory=list)  # the account's, at "Meta"
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def then(self, *outcomes: Exception | None) -> FakeGraphClient:
        """Queue outcomes for the next sends: an exception to raise, or None to accept."""
        self.script.extend(outcomes)
        return self

    async def send_message(
        self, phone_number_id: str, body: dict[str, Any], ref: SendRef | None = None
    ) -> Accepted:
        self.sent.append((phone_number_id, body))
        self.refs.append(ref)
        if self.delay:
            await asyncio.sleep(self.delay)
        outcome = self.script.popleft() if self.script else None
        if outcome is not None:
            raise outcome
        if body.get("status") == "read":
            return Accepted(wamid=None)
        wa_id = str(body["to"]).lstrip("+") if "to" in body else None
        return Accepted(wamid=f"wamid.fake{next(self._ids)}", wa_id=wa_id)

    async def upload_media(
        self, phone_number_id: str, data: bytes, mime_type: str, filename: str | None
    ) -> str:
        outcome = self.upload_script.popleft() if self.upload_script else None
        if outcome is not None:
            raise outcome
        self.uploads.append((phone_number_id, data, mime_type))
        return f"media{len(self.uploads)}"

    async def fetch_media(self, media_id: str, max_bytes: int) -> tuple[bytes, str | None]:
        self.fetched.append(media_id)
        outcome = self.fetch_script.popleft() if self.fetch_script else None
        if outcome is not None:
            raise outcome
        if media_id not in self.media:
            message = f"Unsupported get request. Object with ID '{media_id}' does not exist"
            raise MediaGone(media_id, 100, message, details=None)
        data, mime_type = self.media[media_id]
        if len(data) > max_bytes:
            raise too_large(f"media {media_id}", len(data), max_bytes)
        return data, mime_type

    async def list_templates(self, waba_id: str) -> list[dict[str, Any]]:
        return [dict(t) for t in self.templates]

    async def create_template(self, waba_id: str, template: dict[str, Any]) -> dict[str, Any]:
        created = {**template, "id": str(len(self.templates) + 1), "status": "PENDING"}
        self.templates.append(created)
        return {"id": created["id"], "status": "PENDING", "category": template["category"]}

    async def download(self, url: str, max_bytes: int) -> tuple[bytes, str | None]:
        if url not in self.downloads:
            raise GraphApiError(131053, "Media upload error", details=f"{url} answered HTTP 404")
        return self.downloads[url]


def meta_error(code: int, title: str = "error", details: str | None = None) -> GraphApiError:
    """A Graph error as the fake raises it (tests)."""
    return GraphApiError(code, f"(#{code}) {title}", details=details)
