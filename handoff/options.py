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
"""

from __future__ import annotations

from datetime import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.profiles import CompanyProfile

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class TemplateRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    language: str = "es_AR"


class Interval(BaseModel):
    start: time
    end: time


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
