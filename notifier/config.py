"""What the notifier's use cases read, built from the settings at bootstrap (never Settings)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

from notifier.settings import Settings
from notifier.texts import Texts, zone
from shared.profiles import CompanyProfile, Profiles


@dataclass(frozen=True)
class Retries:
    """How one email is retried in-process when SES throttles it, before the bus's tiers."""

    max_attempts: int
    backoff_seconds: float
    backoff_max_seconds: float
    # A claimed email not confirmed within this lease may be claimed again (crash recovery).
    claim_lease_seconds: float


@dataclass(frozen=True)
class NotifierConfig:
    # The operators' mail (error reports, digests, Meta's alerts).
    operator_sender: str
    operator_recipients: tuple[str, ...]
    reply_to: tuple[str, ...]
    digest_window_seconds: float
    operator_mails_per_minute: int
    retries: Retries
    texts: Texts
    profiles: Profiles
    tz: tzinfo  # the operators' mail shows its times in this zone

    @classmethod
    def from_settings(cls, settings: Settings, texts: Texts, profiles: Profiles) -> NotifierConfig:
        return cls(
            operator_sender=settings.ERROR_FROM_EMAIL,
            operator_recipients=tuple(settings.error_recipients),
            reply_to=tuple(settings.reply_to),
            digest_window_seconds=settings.ERROR_DIGEST_WINDOW_SECONDS,
            operator_mails_per_minute=settings.ERROR_MAILS_PER_MINUTE,
            retries=Retries(
                max_attempts=settings.SES_MAX_ATTEMPTS,
                backoff_seconds=settings.SES_BACKOFF_SECONDS,
                backoff_max_seconds=settings.SES_BACKOFF_MAX_SECONDS,
                claim_lease_seconds=settings.EMAIL_CLAIM_LEASE_SECONDS,
            ),
            texts=texts,
            profiles=profiles,
            tz=zone(settings.NOTIFIER_TIMEZONE),
        )

    def tz_for(self, profile: CompanyProfile) -> tzinfo:
        return zone(profile.timezone)

    def reply_to_for(self, profile: CompanyProfile) -> tuple[str, ...]:
        return (profile.reply_to,) if profile.reply_to else self.reply_to
