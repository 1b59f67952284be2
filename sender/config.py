"""The sender's internal configuration: what its handlers read, built from the settings.

Three names, three things: ``Settings`` (``sender.settings``) are the environment variables;
``SenderConfig`` (here) is what the handlers read, built from them at bootstrap; the company
profiles (``shared.profiles``) name the templates the business needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from sender.settings import Settings


@dataclass(frozen=True)
class SenderConfig:
    default_number: str
    validity_seconds: float = 4 * 3600.0
    lease_seconds: float = 30.0
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    pair_backoff_unit: float = 4.0
    probe_seconds: float = 30.0
    orphan_seconds: float = 60.0
    unknown_outcome_seconds: float = 5.0
    request_timeout: float = 10.0
    media_max_bytes: int = 100 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> SenderConfig:
        return cls(
            default_number=settings.META_WA_PHONE_NUMBER_ID,
            validity_seconds=settings.SENDER_VALIDITY_SECONDS,
            # Long enough for the pacing wait and the request; a crashed try is taken over after.
            lease_seconds=settings.SENDER_REQUEST_TIMEOUT_SECONDS * 2
            + settings.SENDER_LEASE_EXTRA_SECONDS,
            backoff_base=settings.SENDER_BACKOFF_BASE_SECONDS,
            backoff_max=settings.SENDER_BACKOFF_MAX_SECONDS,
            pair_backoff_unit=settings.SENDER_PAIR_BACKOFF_SECONDS,
            probe_seconds=settings.SENDER_CIRCUIT_PROBE_SECONDS,
            orphan_seconds=settings.SENDER_STATUS_ORPHAN_SECONDS,
            unknown_outcome_seconds=settings.SENDER_UNKNOWN_OUTCOME_SECONDS,
            request_timeout=settings.SENDER_REQUEST_TIMEOUT_SECONDS,
            media_max_bytes=settings.SENDER_MEDIA_MAX_BYTES,
        )
