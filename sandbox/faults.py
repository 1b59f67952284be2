"""Injected faults, scoped to the whole business number or to one recipient."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class FaultRequest(BaseModel):
    """The JSON of `POST /_sandbox/faults`; fields left out keep their current value."""

    model_config = ConfigDict(extra="forbid")

    recipient: str | None = None
    # The next `count` sends (every send when count is left out) answer this Meta error.
    error_code: int | None = None
    error_details: str | None = None
    count: int | None = Field(default=None, ge=1)
    latency_ms: int | None = Field(default=None, ge=0)
    http_500_rate: float | None = Field(default=None, ge=0, le=1)
    timeout_rate: float | None = Field(default=None, ge=0, le=1)
    timeout_seconds: float | None = Field(default=None, gt=0)
    # Whether a timed-out send is still accepted (as when Meta took it but the answer was lost).
    timeout_accepts: bool | None = None
    drop_status_webhooks: bool | None = None
    # Accept the send, then post a `failed` status with this code (for `count` sends, or all).
    async_failure_code: int | None = None
    duplicate_webhooks: bool | None = None
    reorder_webhooks: bool | None = None
    # Whole-number only.
    expire_token: bool | None = None
    renew_token: bool | None = None
    new_token: str | None = Field(default=None, min_length=1)


@dataclass
class FaultSet:
    """The faults of one scope."""

    error_code: int | None = None
    error_details: str | None = None
    error_remaining: int | None = None
    latency_ms: int = 0
    http_500_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_seconds: float | None = None
    timeout_accepts: bool = False
    drop_status_webhooks: bool = False
    async_failure_code: int | None = None
    async_remaining: int | None = None
    duplicate_webhooks: bool = False
    reorder_webhooks: bool = False

    def update(self, request: FaultRequest) -> None:
        given = request.model_fields_set
        for spec in fields(self):
            if spec.name in given:
                setattr(self, spec.name, getattr(request, spec.name))
        if "error_code" in given:
            self.error_remaining = request.count
        if "async_failure_code" in given:
            self.async_remaining = request.count

    def disturbs_requests(self) -> bool:
        return bool(self.latency_ms or self.timeout_rate or self.http_500_rate)

    def take_error(self) -> tuple[int, str | None] | None:
        if self.error_code is None:
            return None
        found = (self.error_code, self.error_details)
        if self.error_remaining is not None:
            self.error_remaining -= 1
            if self.error_remaining <= 0:
                self.error_code = self.error_details = self.error_remaining = None
        return found

    def take_async_failure(self) -> int | None:
        code = self.async_failure_code
        if code is not None and self.async_remaining is not None:
            self.async_remaining -= 1
            if self.async_remaining <= 0:
                self.async_failure_code = self.async_remaining = None
        return code


@dataclass(frozen=True, slots=True)
class RequestFaults:
    """What to do to one Graph API request, decided before it is handled."""

    latency: float = 0.0
    http_500: bool = False
    timeout: float | None = None
    timeout_accepts: bool = False


NO_REQUEST_FAULTS = RequestFaults()


@dataclass(frozen=True, slots=True)
class DeliveryFaults:
    """What to do to the status webhooks of one accepted send."""

    drop: bool = False
    async_failure_code: int | None = None
    duplicate: bool = False
    reorder: bool = False


class Faults:
    """Every injected fault; the recipient's scope is checked before the number's."""

    def __init__(
        self,
        rng: random.Random,
        *,
        default_timeout: float,
        duplicate_webhooks: bool = False,
        reorder_webhooks: bool = False,
    ) -> None:
        self._rng = rng
        self._default_timeout = default_timeout
        self._baseline = FaultSet(
            duplicate_webhooks=duplicate_webhooks, reorder_webhooks=reorder_webhooks
        )
        self.number = replace(self._baseline)
        self.recipients: dict[str, FaultSet] = {}
        self.token_expired = False

    def clear(self) -> None:
        """Back to the configured baseline (duplicates/reordering may be on by configuration)."""
        self.number = replace(self._baseline)
        self.recipients.clear()
        self.token_expired = False

    def apply(self, request: FaultRequest, recipient: str | None) -> None:
        """Merge a request into its scope (`recipient` already normalised to +E164)."""
        if recipient is None:
            scope = self.number
        else:
            scope = self.recipients.setdefault(recipient, FaultSet())
        scope.update(request)
        if request.expire_token:
            self.token_expired = True
        if request.renew_token:
            self.token_expired = False

    def _scopes(self, recipient: str | None) -> list[FaultSet]:
        scoped = self.recipients.get(recipient) if recipient else None
        return [scoped, self.number] if scoped else [self.number]

    def for_request(self, recipient: str | None) -> RequestFaults:
        """Roll the (seeded) dice for one Graph API request."""
        scopes = self._scopes(recipient)
        if scopes[0] is self.number and not self.number.disturbs_requests():
            return NO_REQUEST_FAULTS
        latency = max(s.latency_ms for s in scopes) / 1000
        timeout = None
        rate = max(s.timeout_rate for s in scopes)
        if rate and self._rng.random() < rate:
            timeout = next(
                (s.timeout_seconds for s in scopes if s.timeout_seconds), self._default_timeout
            )
        rate = max(s.http_500_rate for s in scopes)
        http_500 = bool(rate) and self._rng.random() < rate
        accepts = any(s.timeout_accepts for s in scopes)
        return RequestFaults(latency, http_500, timeout, accepts)

    def take_error(self, recipient: str) -> tuple[int, str | None] | None:
        """The injected error for this send, if any (counted errors are used up)."""
        return next((e for s in self._scopes(recipient) if (e := s.take_error()) is not None), None)

    def for_delivery(self, recipient: str) -> DeliveryFaults:
        scopes = self._scopes(recipient)
        code = next((c for s in scopes if (c := s.take_async_failure()) is not None), None)
        return DeliveryFaults(
            drop=any(s.drop_status_webhooks for s in scopes),
            async_failure_code=code,
            duplicate=any(s.duplicate_webhooks for s in scopes),
            reorder=any(s.reorder_webhooks for s in scopes),
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "number": asdict(self.number),
            "recipients": {phone: asdict(s) for phone, s in self.recipients.items()},
            "token_expired": self.token_expired,
        }
