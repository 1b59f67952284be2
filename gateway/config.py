"""What the gateway's use cases read, built from the settings at bootstrap (they never read
``Settings``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.settings import Settings


@dataclass(frozen=True)
class GatewayConfig:
    app_secret: bytes  # the key of X-Hub-Signature-256
    verify_token: str  # Meta's handshake
    webhook_max_bytes: int  # larger WhatsApp bodies are refused (413)
    allowed_topics: Sequence[str]  # SNS topics accepted (empty: any that verifies)

    @classmethod
    def from_settings(cls, settings: Settings) -> GatewayConfig:
        return cls(
            app_secret=settings.META_WA_APP_SECRET.encode(),
            verify_token=settings.META_WA_VERIFY_TOKEN,
            webhook_max_bytes=settings.WEBHOOK_MAX_BYTES,
            allowed_topics=tuple(settings.SNS_ALLOWED_TOPIC_ARNS),
        )
