"""Per-profile handoff options, read from ``CompanyProfile.settings["handoff"]``.

Example (YAML)::

    settings:
      handoff:
        queue_timeout_seconds: 300
        on_queue_timeout: bot          # or: wait
        idle_timeout_seconds: 1800
        echo_quiet_seconds: 900        # after someone answers from the WhatsApp Business app
        business_hours:                # absent: always open
          mon: ["09:00-13:00", "14:00-18:00"]
          sat: ["10:00-13:00"]
        agent_template: {name: handoff_agent_alert, language: es_AR}
        customer_template: {name: reengage_customer, language: es_AR}
        agent_names: {"+5491100000000": Ana}   # how /pasar and the customer name agents
        agent_reply_timeout_seconds: 300       # the customer waits for an answer this long
        canned_replies:                        # /r <name>; {name}: the customer's name
          saludo: "Hola {name}, gracias por escribirnos. ¿En qué te ayudo?"
        rating: {enabled: true, timeout_seconds: 3600}   # on by default; enabled: false: off
"""

from __future__ import annotations

from datetime import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.phone import maybe_e164
from shared.profiles import CompanyProfile

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class TemplateRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    language: str = "es_AR"


class Interval(BaseModel):
    start: time
    end: time


class RatingOptions(BaseModel):
    """The customer's one-tap rating when a case closes (texts: ``handoff.rating.*``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True  # a profile turns it off with rating: {enabled: false}
    # An answer later than this after the close is not counted; the transcript mail waits for
    # the answer at most this long. None: HANDOFF_RATING_TIMEOUT_SECONDS.
    timeout_seconds: float | None = Field(default=None, gt=0)


class HandoffOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    queue_timeout_seconds: float | None = None  # None: HANDOFF_QUEUE_TIMEOUT_SECONDS
    idle_timeout_seconds: float | None = None  # None: HANDOFF_IDLE_TIMEOUT_SECONDS
    # After a person at the business answers from the WhatsApp Business app on the same number
    # (an echo), the bot is quiet for that customer this long. None: HANDOFF_ECHO_QUIET_SECONDS.
    echo_quiet_seconds: float | None = Field(default=None, ge=0)
    on_queue_timeout: Literal["bot", "wait"] = "bot"
    # Outside business hours: "close" tells the customer and emails; "queue" also notifies.
    after_hours: Literal["close", "queue"] = "close"
    business_hours: dict[str, list[Interval]] | None = None
    agent_template: TemplateRef = Field(
        default_factory=lambda: TemplateRef(name="handoff_agent_alert")
    )
    customer_template: TemplateRef = Field(
        default_factory=lambda: TemplateRef(name="reengage_customer")
    )
    # An agent with this many active cases is not "free" and is not notified of new ones.
    max_cases_per_agent: int = 5
    # What a customer writes (the whole message) to end a conversation with a human.
    end_phrases: list[str] = Field(default_factory=lambda: ["salir", "terminar", "/fin"])
    last_messages: int = 5
    # The agents' names (by phone): /pasar takes a name, and the customer reads it.
    agent_names: dict[str, str] = Field(default_factory=dict)
    # An active case's customer waits this long for the agent's answer: it is offered to the
    # other agents. None: HANDOFF_AGENT_REPLY_TIMEOUT_SECONDS; 0: never.
    agent_reply_timeout_seconds: float | None = Field(default=None, ge=0)
    # /r <name>: the reply, "{name}" filled in with the customer's name.
    canned_replies: dict[str, str] = Field(default_factory=dict)
    rating: RatingOptions = Field(default_factory=RatingOptions)

    @field_validator("agent_names")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        named: dict[str, str] = {}
        for phone, name in value.items():
            number = maybe_e164(phone)
            if number is None:
                raise ValueError(f"{phone!r} is not a phone number")
            named[number] = name
        return named

    @field_validator("business_hours", mode="before")
    @classmethod
    def _hours(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        parsed: dict[str, list[dict[str, str]]] = {}
        for day, spans in value.items():
            key = str(day).lower()[:3]
            if key not in WEEKDAYS:
                raise ValueError(f"unknown weekday {day!r}")
            items = [spans] if isinstance(spans, str) else list(spans or [])
            result: list[dict[str, str]] = []
            for span in items:
                if isinstance(span, str):
                    start, _, end = span.partition("-")
                    result.append({"start": start.strip(), "end": end.strip()})
                else:
                    result.append(span)
            parsed[key] = result
        return parsed


def options_for(profile: CompanyProfile) -> HandoffOptions:
    raw = profile.settings.get("handoff") or {}
    return HandoffOptions.model_validate(raw)
