"""The sender's repository port (:class:`SenderStore`) and what it keeps.

The message log is the idempotency record: a row is claimed (``sending``, with a lease) before
the Graph API call and updated with Meta's answer after it. Status ranks only grow. The port is
four parts, each with its PostgreSQL half in its own module: the message log (claims and
acceptances: ``sender.pg_log``), statuses and adoption (``sender.pg_statuses``), pacing slots,
circuits and recipient backoffs (``sender.pg_limits``), and what Meta says of customers,
templates and the account (``sender.pg_signals``); ``sender.pg_store.PostgresStore`` is all
four (the fake, for unit tests: ``tests/fakes/sender.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import orjson

from shared.db import Pool
from shared.events import Event, MetaError
from shared.resources import Database

RANKS: dict[str, int] = {
    "pending": 0,
    "sending": 1,
    "accepted": 2,
    "sent": 3,
    "delivered": 4,
    "read": 5,
    "played": 6,
    "failed": 9,
}
# The ranks the SQL below names (interpolated: RANKS is their one definition).
PENDING_RANK = RANKS["pending"]
SENDING_RANK = RANKS["sending"]
ACCEPTED_RANK = RANKS["accepted"]
SENT_RANK = RANKS["sent"]
FAILED_RANK = RANKS["failed"]
# Retention (shared.db.prune, $1 = RETENTION_DAYS, $2 = batch): log rows untouched for that long
# whose validity ended as long ago (no redelivery of their command can come any more), and the
# superseded wamids and recipient backoffs of that age.
PRUNING = (
    "DELETE FROM messages WHERE ctid = ANY(ARRAY(SELECT ctid FROM messages"
    " WHERE updated_at < now() - $1 * interval '1 day'"
    " AND valid_until < now() - $1 * interval '1 day' LIMIT $2))",
    "DELETE FROM superseded_wamids WHERE ctid = ANY(ARRAY(SELECT ctid FROM superseded_wamids"
    " WHERE at < now() - $1 * interval '1 day' LIMIT $2))",
    "DELETE FROM recipient_backoff WHERE ctid = ANY(ARRAY(SELECT ctid FROM recipient_backoff"
    " WHERE until < now() - $1 * interval '1 day' LIMIT $2))",
)
# How long a patient claim may wait for others to share its statement (seconds).
PATIENT_CLAIM_SECONDS = 0.02


@dataclass(frozen=True, slots=True)
class LogRow:
    command_id: str
    phone_number_id: str
    recipient: str
    kind: str
    status: str
    status_rank: int
    wamid: str | None
    attempts: int
    used_fallback: bool
    media_id: str | None
    reason: str | None
    error: MetaError | None
    lease_left: float  # seconds until another replica may take it over (<= 0: free)
    # What the failure means, when the sender decided it without Meta's code (else None).
    reason_code: str | None = None


@dataclass(frozen=True, slots=True)
class NewMessage:
    command_id: str
    phone_number_id: str
    recipient: str
    kind: str
    command_json: str
    valid_until: datetime
    # A marketing template (the command's or its fallback's): the claim reads whether the
    # customer stopped marketing messages.
    marketing: bool = False


@dataclass(frozen=True, slots=True)
class Claim:
    """``claimed``: ours to send now; ``done``: settled before; ``busy``: another try is live."""

    outcome: Literal["claimed", "done", "busy"]
    row: LogRow | None = None
    attempts: int = 0
    used_fallback: bool = False
    media_id: str | None = None
    backoff_left: float = 0.0  # the recipient is in a 131056 backoff for this long
    # The try before this one stopped mid-way (its lease ran out or it was interrupted): Meta
    # may have its request.
    taken_over: bool = False
    customer: str | None = None  # the recipient's customer key, when the database knows one
    marketing_stopped: bool = False  # a marketing message, and the customer stopped them
    not_before: datetime | None = None  # Meta withheld it (131049): not again before this


@dataclass(frozen=True, slots=True)
class StatusChange:
    row: LogRow  # after the update
    old_rank: int
    changed: bool
    first_priced: bool = False  # the first status of the message that carried its pricing


@dataclass(frozen=True, slots=True)
class Adoption:
    """What a status naming its command (shared.send_ref) says of a wamid the log lacks.

    ``adopted``: the command's answer was lost; the wamid is now its own. ``duplicate``: the
    command already has another wamid, so Meta took it twice (kept as superseded: its statuses
    are not counted). ``late``: the command ended failed, yet Meta took it (the wamid is kept
    on the row; the status stays failed). ``known``: the wamid is the command's already (another
    status of it, handled at the same time, adopted it first). ``none``: no such command in the
    log.
    """

    outcome: Literal["adopted", "known", "duplicate", "late", "none"]
    row: LogRow | None = None


@dataclass(frozen=True, slots=True)
class TemplateState:
    """What Meta says of one template now."""

    name: str
    language: str
    status: str | None  # APPROVED, PAUSED, DISABLED, REJECTED, PENDING, ...
    category: str | None  # UTILITY, MARKETING, AUTHENTICATION
    quality: str | None  # GREEN, YELLOW, RED, UNKNOWN
    template_id: str | None = None


@dataclass(frozen=True, slots=True)
class TemplateUpdate:
    """What one webhook (or Meta's list) says of a template at ``at``; None: it says nothing
    of that attribute. Named by (name, language), or by id alone."""

    name: str | None
    language: str | None
    template_id: str | None
    at: datetime
    status: str | None = None
    category: str | None = None
    quality: str | None = None
    next_category: str | None = None  # announced for next_category_at
    next_category_at: datetime | None = None


class MessageLog(Protocol):
    """The log rows of send commands: claims, answers, releases."""

    async def claim(
        self, message: NewMessage, lease_seconds: float, *, patient: bool = False
    ) -> Claim:
        """Take the message's log row for a try (see :class:`Claim`). ``patient``: the send
        waits for its slot longer than :data:`PATIENT_CLAIM_SECONDS` anyway, so the claim may
        wait that long to share its statement with others."""
        ...

    async def get(self, command_id: str) -> LogRow | None: ...

    async def save_media(self, command_id: str, media_id: str) -> None: ...

    async def use_fallback(self, command_id: str) -> None: ...

    async def accepted(
        self, command_id: str, wamid: str | None, result: Event | None = None
    ) -> None:
        """Record Meta's answer and, atomically with it, ``result`` in the outbox."""
        ...

    async def release(
        self,
        command_id: str,
        reason: str,
        error: MetaError | None,
        *,
        not_before: datetime | None = None,
    ) -> None:
        """Back to pending (not sent); ``not_before``: not to be sent again before then."""
        ...

    async def interrupted(self, command_id: str, hold_seconds: float) -> None:
        """A try stopped while Meta may have had its request: the next try takes over in
        ``hold_seconds`` (not at the end of the lease), and waits for a status first (see
        Claim.taken_over)."""
        ...

    async def failed(
        self,
        message: NewMessage,
        reason: str,
        error: MetaError | None,
        reason_code: str | None = None,
    ) -> bool:
        """Final, unless Meta accepted it meanwhile (False). ``reason_code``: what it means,
        when the sender decided it without Meta's code."""
        ...


class StatusLog(Protocol):
    """Status webhooks applied to the log, and the wamids it learns from them."""

    async def apply_status(
        self,
        wamid: str,
        status: str,
        at: datetime,
        error: MetaError | None,
        *,
        priced: bool = False,
    ) -> StatusChange | None:
        """``priced``: the status carries the message's pricing (counted once per message)."""
        ...

    async def adopt(self, wamid: str, phone_number_id: str, recipient: str) -> LogRow | None: ...

    async def adopt_sent(self, wamid: str, command_id: str) -> Adoption:
        """A status for ``wamid``, tagged with the command that sent it (see :class:`Adoption`)."""
        ...

    async def reopen_for_fallback(self, wamid: str, error: MetaError) -> tuple[str, bool] | None:
        """Meta accepted ``wamid`` and then reported it outside the 24 h window (131047): when
        its command has a fallback template not yet used, put the message back to be sent with
        it (the wamid is kept as superseded). The command's JSON and whether it was reopened
        now (False: done before for this wamid); None when there is nothing to fall back to."""
        ...

    async def superseded(self, wamid: str) -> bool:
        """Whether ``wamid`` was replaced by a fallback template's send."""
        ...


class Limits(Protocol):
    """What holds sends back: pacing slots, circuits, recipient backoffs."""

    async def reserve_slots(
        self, phone_number_id: str, count: int, rate: float, backdate: float
    ) -> tuple[float, float]: ...

    async def open_circuit(
        self, phone_number_id: str, reason: str, kind: str = "token"
    ) -> int | None:
        """The incident number when this opened the circuit (None: it was open)."""
        ...

    async def close_circuit(self, phone_number_id: str, kind: str = "token") -> bool: ...

    async def open_circuits(self) -> list[tuple[str, str]]:
        """(number, kind) of every open circuit."""
        ...

    async def backoff_recipient(
        self, phone_number_id: str, recipient: str, unit: float, cap: float
    ) -> float: ...


class Signals(Protocol):
    """What Meta tells besides statuses: customers, preferences, templates, the account."""

    async def link_customer(self, identifiers: Sequence[str]) -> str:
        """Record ``identifiers`` as one customer (the first preferred as a new customer's key,
        two known customers merged); the customer's key."""
        ...

    async def set_marketing(
        self, identifiers: Sequence[str], *, stopped: bool, at: datetime, source: str
    ) -> None:
        """The customer's marketing preference as of ``at`` (an older one is ignored)."""
        ...

    async def save_template(self, update: TemplateUpdate) -> bool:
        """False when the update names a template by an id never seen with its name."""
        ...

    async def templates(self, now: datetime) -> list[TemplateState]: ...

    async def set_account_state(
        self, waba_id: str, state: str, event: str, at: datetime
    ) -> None: ...

    async def account_states(self) -> list[str]:
        """The standing of every account the sender heard of."""
        ...


class SenderStore(MessageLog, StatusLog, Limits, Signals, Protocol):
    """Everything the sender keeps."""


# --------------------------------------------------------------------------- SQL helpers


class OnDatabase:
    """A part of the PostgreSQL store: statements on the service's database."""

    database: Database

    @property
    def pool(self) -> Pool:
        return self.database.pool


def error_json(error: MetaError | None) -> str | None:
    return error.model_dump_json(exclude_none=True) if error is not None else None


def entry(**values: Any) -> str:
    values.setdefault("at", datetime.now(UTC).isoformat())
    return orjson.dumps({k: v for k, v in values.items() if v is not None}).decode()


ROW_COLUMNS = (
    "command_id, phone_number_id, recipient, kind, status, status_rank, wamid, attempts,"
    " used_fallback, media_id, reason, error::text AS error, reason_code,"
    " COALESCE(extract(epoch FROM claimed_until - now()), 0)::float8 AS lease_left"
)


def log_row(record: Any) -> LogRow:
    error = record["error"]
    return LogRow(
        command_id=record["command_id"],
        phone_number_id=record["phone_number_id"],
        recipient=record["recipient"],
        kind=record["kind"],
        status=record["status"],
        status_rank=record["status_rank"],
        wamid=record["wamid"],
        attempts=record["attempts"],
        used_fallback=record["used_fallback"],
        media_id=record["media_id"],
        reason=record["reason"],
        error=MetaError.model_validate_json(error) if error else None,
        lease_left=float(record["lease_left"]),
        reason_code=record["reason_code"],
    )


def status_reason(error: MetaError | None) -> str | None:
    if error is None:
        return "failed status webhook"
    return f"{error.code} {error.title or error.message or ''}".strip()


# --------------------------------------------------------------------------- fake
