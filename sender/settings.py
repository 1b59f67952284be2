"""The sender's configuration, from environment variables (names are the field names)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from shared.settings import DatabaseSettings

# Retry tiers (ms): roughly x1.5 apart so that a jittered delay spreads over several tiers,
# up to 5 minutes. Each tier is one wait queue in RabbitMQ.
DEFAULT_RETRY_TIERS_MS: tuple[int, ...] = (
    1_000,
    1_500,
    2_000,
    3_000,
    4_000,
    6_000,
    8_000,
    12_000,
    16_000,
    24_000,
    32_000,
    48_000,
    64_000,
    96_000,
    128_000,
    192_000,
    300_000,
)


class Settings(DatabaseSettings):
    service_name: ClassVar[str] = "sender"

    META_WA_ACCESS_TOKEN: str = Field(min_length=1)
    # The default business number (a command may name another one).
    META_WA_PHONE_NUMBER_ID: str = Field(min_length=1)
    META_GRAPH_URL: str = "https://graph.facebook.com"
    # Meta retires each version about two years after its release (sender/versions.py).
    META_GRAPH_VERSION: str = "v25.0"
    # The WhatsApp Business Account (WABA) id: its message templates are listed, created and
    # checked at start-up (`python -m sender templates`). Without it, the check is skipped.
    META_WA_BUSINESS_ACCOUNT_ID: str | None = None
    # The company profiles: the templates the business needs (`templates`).
    COMPANY_PROFILES_FILE: str | None = None
    SENDER_PORT: int = 9101

    # Throughput per business number (Meta: 80/s by default, up to 1000/s).
    SENDER_RATE_PER_SECOND: float = Field(default=80.0, gt=0, le=1000)
    # Per-number overrides: "100000000000001=1000,100000000000002=20".
    SENDER_RATE_OVERRIDES: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    # How far ahead one replica reserves send slots in one UPDATE (seconds of throughput).
    SENDER_RATE_BATCH_SECONDS: float = Field(default=0.05, gt=0, le=1)
    # How late a send may use its slot (at least one interval): after a late wake-up the slots
    # due meanwhile go at once. The number's sends (all replicas) conform to a token bucket of
    # capacity 1 + rate x this, refilled at rate/s; Meta's (the sandbox's) holds rate tokens.
    SENDER_RATE_BURST_SECONDS: float = Field(default=0.05, ge=0, le=0.5)
    # Per recipient (Meta's pair limit): a burst, then one message every interval.
    SENDER_PAIR_BURST: int = Field(default=45, ge=1)
    SENDER_PAIR_INTERVAL_SECONDS: float = Field(default=6.0, gt=0)
    # After a 131056 answer: no sends to that recipient for unit * 4^(n-1) seconds (n-th time).
    SENDER_PAIR_BACKOFF_SECONDS: float = Field(default=4.0, gt=0)
    # A message that cannot be sent within this long after it was requested fails.
    SENDER_VALIDITY_SECONDS: float = Field(default=4 * 3600.0, gt=0)
    SENDER_REQUEST_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0)
    # Messages handled at once per replica (also the broker prefetch).
    SENDER_CONCURRENCY: int = Field(default=256, ge=1, le=5000)
    SENDER_STATUS_CONCURRENCY: int = Field(default=64, ge=1, le=5000)
    SENDER_RETRY_TIERS_MS: Annotated[tuple[int, ...], NoDecode] = DEFAULT_RETRY_TIERS_MS
    # Exponential backoff for retryable errors: base * 2^(attempt-1), capped, with jitter.
    SENDER_BACKOFF_BASE_SECONDS: float = Field(default=1.0, gt=0)
    SENDER_BACKOFF_MAX_SECONDS: float = Field(default=300.0, gt=0)
    # With an invalid or expired token: how often one message is let through as a probe.
    SENDER_CIRCUIT_PROBE_SECONDS: float = Field(default=30.0, gt=0)
    # A status for a wamid not in the log yet is retried for this long (it may race the log).
    SENDER_STATUS_ORPHAN_SECONDS: float = Field(default=60.0, ge=0)
    # After a timeout (Meta may have accepted the send), wait at least this long before sending
    # again, so that the message's status webhook can tell the log it went out.
    SENDER_UNKNOWN_OUTCOME_SECONDS: float = Field(default=5.0, ge=0)
    # A claimed send is taken over by another try after 2 x request timeout + this.
    SENDER_LEASE_EXTRA_SECONDS: float = Field(default=5.0, ge=0)
    # Largest media the sender downloads to upload from a URL.
    SENDER_MEDIA_MAX_BYTES: int = Field(default=100 * 1024 * 1024, ge=1)
    # How often each replica reads the template states and the account's standing from the
    # database (the refusals and the database-wide gauges).
    SENDER_STATE_REFRESH_SECONDS: float = Field(default=15.0, gt=0)
    # How often the configured templates are checked against Meta's list (and at start-up).
    SENDER_TEMPLATE_CHECK_SECONDS: float = Field(default=86_400.0, gt=0)

    @field_validator("SENDER_RETRY_TIERS_MS", mode="before")
    @classmethod
    def _tiers(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            try:
                value = tuple(int(p) for p in parts)
            except ValueError:
                raise ValueError("expected milliseconds like '1000,2000,4000'") from None
        if isinstance(value, list | tuple):
            if not value or any(int(v) <= 0 for v in value):
                raise ValueError("expected at least one positive tier")
            value = tuple(sorted({int(v) for v in value}))
        return value

    @field_validator("SENDER_RATE_OVERRIDES", mode="before")
    @classmethod
    def _overrides(cls, value: Any) -> Any:
        if isinstance(value, str):
            found: dict[str, float] = {}
            for part in value.split(","):
                if not part.strip():
                    continue
                number, sep, rate = part.partition("=")
                if not sep:
                    raise ValueError("expected 'phone_number_id=rate,...'")
                try:
                    found[number.strip()] = float(rate)
                except ValueError:
                    raise ValueError(f"rate for {number.strip()} is not a number") from None
            value = found
        if isinstance(value, dict):
            for number, rate in value.items():
                if not 0 < float(rate) <= 1000:
                    raise ValueError(f"rate for {number} must be in (0, 1000]")
        return value

    def rate_for(self, phone_number_id: str) -> float:
        return float(self.SENDER_RATE_OVERRIDES.get(phone_number_id, self.SENDER_RATE_PER_SECOND))

    @property
    def graph_base(self) -> str:
        return f"{self.META_GRAPH_URL.rstrip('/')}/{self.META_GRAPH_VERSION}"
