"""The notifier's configuration (environment variables, validated at start-up)."""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from shared.settings import MIN_RETENTION_DAYS, DatabaseSettings

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class Settings(DatabaseSettings):
    service_name: ClassVar[str] = "notifier"

    # Amazon SES (sesv2). Without keys the default credential chain is used (an IAM role, a
    # profile, the environment); no session token is needed.
    AWS_REGION: str = "us-east-1"
    AWS_ACCESS_KEY_ID: str | None = None
    AWS_SECRET_ACCESS_KEY: SecretStr | None = None
    # moto's server in tests and `make run`; unset in production.
    SES_ENDPOINT_URL: str | None = None
    SES_CONFIGURATION_SET: str | None = None
    # In sandbox mode the sender identities are created at start-up when SES_ENDPOINT_URL is a
    # 127.0.0.1/localhost moto; set this for a moto under another name (docker compose's `ses`).
    SES_SANDBOX_IDENTITIES: bool = False
    # The account's maximum send rate (SES sandbox: 1 per second).
    SES_RATE_PER_SECOND: float = Field(default=1.0, gt=0)
    # Throttling: attempts in-process (with exponential backoff and jitter) before the message
    # goes back to the bus's retry tiers.
    SES_MAX_ATTEMPTS: int = Field(default=4, ge=1)
    SES_BACKOFF_SECONDS: float = Field(default=0.5, gt=0)
    SES_BACKOFF_MAX_SECONDS: float = Field(default=20.0, gt=0)
    SES_TIMEOUT_SECONDS: float = Field(default=15.0, gt=0)

    # Where error reports go, and who sends them.
    ERROR_LOG_EMAIL: str
    ERROR_FROM_EMAIL: str = "notificaciones.chatbot@gmail.com"
    REPLY_TO_EMAIL: str | None = None
    COMPANY_PROFILES_FILE: str | None = None
    # Optional YAML/JSON mapping of text keys to Spanish (or other) texts for the email templates.
    EMAIL_TEXTS_FILE: str | None = None
    # Time zone the error reports show their times in.
    NOTIFIER_TIMEZONE: str = "America/Argentina/Buenos_Aires"

    NOTIFIER_PORT: int = 9103
    NOTIFIER_CONCURRENCY: int = Field(default=16, ge=1)

    # Storm control: identical errors (same fingerprint) within the window fold into one digest;
    # at most ERROR_MAILS_PER_MINUTE error mails (reports and digests) go out per minute.
    ERROR_DIGEST_WINDOW_SECONDS: float = Field(default=300.0, gt=0)
    ERROR_MAILS_PER_MINUTE: int = Field(default=10, ge=1)
    # How often due digests are looked for.
    DIGEST_FLUSH_INTERVAL_SECONDS: float = Field(default=1.0, gt=0)
    # A claimed email not confirmed within this lease may be claimed again (crash recovery).
    EMAIL_CLAIM_LEASE_SECONDS: float = Field(default=120.0, gt=0)
    # Deprecated: the mail log and the digests follow RETENTION_DAYS, as every record does. Set
    # without RETENTION_DAYS, it is the notifier's RETENTION_DAYS (at least its minimum, 8).
    EMAIL_LOG_RETENTION_DAYS: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _email_log_retention(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        days = data.get("EMAIL_LOG_RETENTION_DAYS")
        if days not in (None, "") and data.get("RETENTION_DAYS") in (None, ""):
            # Not a number: the field's own validation names the variable.
            with contextlib.suppress(TypeError, ValueError):
                data["RETENTION_DAYS"] = max(float(days), MIN_RETENTION_DAYS)
        return data

    @property
    def retention_warning(self) -> str | None:
        """What the log says at start when the deprecated EMAIL_LOG_RETENTION_DAYS is set."""
        if self.EMAIL_LOG_RETENTION_DAYS is None:
            return None
        return (
            "EMAIL_LOG_RETENTION_DAYS is deprecated: the mail log follows RETENTION_DAYS "
            f"(now {self.RETENTION_DAYS:g} days); set RETENTION_DAYS instead"
        )

    @property
    def error_recipients(self) -> list[str]:
        return _addresses(self.ERROR_LOG_EMAIL)

    @property
    def reply_to(self) -> list[str]:
        return _addresses(self.REPLY_TO_EMAIL or "")

    @property
    def creates_sandbox_identities(self) -> bool:
        """Whether to create the sender identities at start-up (sandbox mode, moto only)."""
        if self.MENSAJERO_ENV != "sandbox" or not self.SES_ENDPOINT_URL:
            return False
        return self.ses_is_local or self.SES_SANDBOX_IDENTITIES

    @property
    def ses_is_local(self) -> bool:
        """True when SES is a local stand-in (moto) we may set up ourselves."""
        if not self.SES_ENDPOINT_URL:
            return False
        return (urlsplit(self.SES_ENDPOINT_URL).hostname or "") in LOCAL_HOSTS


def _addresses(value: str) -> list[str]:
    """A comma- or semicolon-separated list of addresses."""
    return [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
