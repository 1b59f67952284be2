"""Handoff's configuration, from environment variables (see shared.settings)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from shared.phone import InvalidPhone, to_e164
from shared.settings import DatabaseSettings


class Settings(DatabaseSettings):
    service_name: ClassVar[str] = "handoff"

    # One agent number or a comma-separated list; E.164 after validation.
    AGENT_WHATSAPP_NUMBER: str
    COMPANY_PROFILES_FILE: str | None = None
    HANDOFF_PORT: int = 9102
    # Nobody claims a queued case within this: tell the customer, email the profile.
    HANDOFF_QUEUE_TIMEOUT_SECONDS: float = 600.0
    # An active case with no message either way for this long is closed.
    HANDOFF_IDLE_TIMEOUT_SECONDS: float = 3600.0
    # Someone at the business answered a customer from the WhatsApp Business app (coexistence):
    # the bot leaves that customer alone this long after each such message (a profile may
    # override; 0: it does not).
    HANDOFF_ECHO_QUIET_SECONDS: float = Field(default=1800.0, ge=0)
    # An agent's message for no case in particular, with several cases waiting, is kept this
    # long while they choose its case from a list; then it expires and they are told. At most a
    # day, so their 24-hour window (they wrote it) is still open for the note.
    HANDOFF_DRAFT_TTL_SECONDS: float = Field(default=600.0, gt=0, le=86400)
    # An active case whose customer waited this long for the agent's answer is offered to the
    # other available agents (a profile may override; 0: never).
    HANDOFF_AGENT_REPLY_TIMEOUT_SECONDS: float = Field(default=300.0, ge=0)
    # The customer's rating after a case closed counts within this; the transcript mail waits
    # for it at most this long (a profile may override).
    HANDOFF_RATING_TIMEOUT_SECONDS: float = Field(default=900.0, gt=0)
    # How often each replica looks for due timers and unpublished outbox rows.
    HANDOFF_TIMER_POLL_SECONDS: float = 1.0
    # Outbox rows left unpublished this long (a crash after commit) are published by the relay.
    HANDOFF_OUTBOX_RELAY_AFTER_SECONDS: float = 5.0
    # "menu": the built-in menu of the company profile; "external": publish bot.message.
    BOT_MODE: Literal["menu", "external"] = "menu"
    HANDOFF_CONCURRENCY: int = 16

    @field_validator("AGENT_WHATSAPP_NUMBER")
    @classmethod
    def _agents(cls, value: str) -> str:
        numbers = [part for part in (p.strip() for p in value.split(",")) if part]
        if not numbers:
            raise ValueError("needs at least one phone number")
        try:
            return ",".join(dict.fromkeys(to_e164(n) for n in numbers))
        except InvalidPhone as error:
            raise ValueError(str(error)) from None

    @property
    def agent_numbers(self) -> list[str]:
        return self.AGENT_WHATSAPP_NUMBER.split(",")
