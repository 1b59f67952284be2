"""Sandbox settings, read from the same environment variables the services use."""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class SandboxConfig(BaseSettings):
    """Every field can be set from the environment (`SANDBOX_<FIELD>`, or the `META_WA_*` names),
    and by its field name in code (``SandboxConfig(access_token=...)``).

    Only those names: an alias is matched against the environment as it is (no prefix, any
    case), so a field name among the aliases would let an unrelated ``ACCESS_TOKEN`` or
    ``APP_SECRET`` variable change the sandbox's token or signing secret.
    """

    model_config = SettingsConfigDict(env_prefix="SANDBOX_", extra="ignore", populate_by_name=True)

    access_token: str = Field(
        default="sandbox-token",
        min_length=1,
        validation_alias="META_WA_ACCESS_TOKEN",
    )
    app_secret: str = Field(
        default="sandbox-app-secret",
        min_length=1,
        validation_alias="META_WA_APP_SECRET",
    )
    phone_number_id: str = Field(
        default="100000000000001",
        min_length=1,
        validation_alias="META_WA_PHONE_NUMBER_ID",
    )
    display_phone_number: str = "+15550000001"
    waba_id: str = "200000000000001"
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    webhook_url: str = "http://127.0.0.1:8080/webhook/whatsapp"

    # Meta's limits.
    rate_per_second: float = Field(default=80.0, gt=0)
    pair_burst: int = Field(default=45, ge=1)
    pair_interval_seconds: float = Field(default=6.0, gt=0)
    enforce_window: bool = True
    window_seconds: float = Field(default=24 * 3600.0, gt=0)

    # Delays (ms) after acceptance before the sent, delivered and read status webhooks.
    status_delays_ms: Annotated[tuple[int, int, int], NoDecode] = (50, 150, 300)
    templates: str | None = None
    # Ids and fault dice. Unset: a new seed each start, so that a restarted sandbox never hands
    # out an earlier run's wamids again: the services keep their state (in PostgreSQL, on a
    # Compose volume too) and would drop a repeated wamid as Meta's retry of a message already
    # answered. Set it to replay a run.
    seed: int = Field(default_factory=lambda: secrets.randbelow(2**31))

    # Webhook delivery.
    webhook_max_batch: int = Field(default=100, ge=1, le=1000)
    webhook_batch_window_ms: int = Field(default=10, ge=0)
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_retry_initial_seconds: float = Field(default=0.2, gt=0)
    webhook_retry_max_seconds: float = Field(default=10.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_concurrency: int = Field(default=16, ge=1)
    webhook_log_max: int = Field(default=2_000, ge=1)
    duplicate_webhooks: bool = False
    reorder_webhooks: bool = False
    # The webhook version the app subscribes with: from v24.0 statuses have no `conversation`
    # (unless a free entry point window is open).
    webhook_version: str = Field(default="v25.0", pattern=r"^v\d+\.\d+$")

    # Customers: give every person a parent BSUID too (`US.ENT.…`), as enrolled portfolios see.
    parent_bsuids: bool = False
    # A marketing template to a customer who stopped marketing: 131050 answered (`sync`), or
    # accepted and then a `failed` status (`async`).
    marketing_stop_failure: Literal["sync", "async"] = "sync"

    # Templates created through the API start PENDING; after this delay they are approved,
    # rejected, or left for `POST /_sandbox/webhooks/emit` to decide (`manual`).
    template_review: Literal["approve", "reject", "manual"] = "approve"
    template_review_seconds: float = Field(default=1.0, ge=0)
    template_rejection_reason: str = Field(default="INVALID_FORMAT", min_length=1)

    media_url_ttl_seconds: float = Field(default=300.0, gt=0)
    # How long a request hangs under a timeout fault (long enough for a client to give up).
    timeout_seconds: float = Field(default=30.0, gt=0)
    log_level: str = Field(
        default="INFO",
        validation_alias=AliasChoices("SANDBOX_LOG_LEVEL", "LOG_LEVEL"),
    )

    @field_validator("status_delays_ms", mode="before")
    @classmethod
    def _parse_delays(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            try:
                numbers = tuple(int(p) for p in parts)
            except ValueError:
                raise ValueError("expected three integers like '50,150,300'") from None
            value = numbers
        if isinstance(value, list | tuple) and (len(value) != 3 or any(int(v) < 0 for v in value)):
            raise ValueError("expected three non-negative delays (sent, delivered, read)")
        return value

    @property
    def status_delays(self) -> tuple[float, float, float]:
        """The status delays in seconds."""
        sent, delivered, read = self.status_delays_ms
        return sent / 1000, delivered / 1000, read / 1000

    @property
    def display_digits(self) -> str:
        """The business number as Meta writes it in webhooks: digits only."""
        return "".join(ch for ch in self.display_phone_number if ch.isdigit())

    @property
    def webhook_major_version(self) -> int:
        """24 for `v24.0`."""
        return int(self.webhook_version[1:].split(".")[0])
