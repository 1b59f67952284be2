"""The gateway's configuration: environment variables, validated at start-up."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from shared.settings import ServiceSettings

# Meta's maximum webhook body: one POST batches up to 1000 updates in up to 3 MB.
META_MAX_BYTES = 3 * 1024 * 1024
# Amazon SNS signs its certificates' URLs from hosts like ``sns.us-east-1.amazonaws.com``.
DEFAULT_SNS_CERT_HOST_PATTERN = r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$"


def _split_list(value: Any) -> Any:
    """Accept ``a,b`` (or a JSON list already decoded) for list settings."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class Settings(ServiceSettings):
    service_name: ClassVar[str] = "gateway"

    META_WA_APP_SECRET: str
    META_WA_VERIFY_TOKEN: str
    GATEWAY_PORT: int = 8080
    # Processes serving GATEWAY_PORT together (SO_REUSEPORT), for a host with several cores; on
    # Kubernetes keep 1 and scale with replicas. Their metrics are summed on /metrics.
    GATEWAY_WORKERS: int = Field(default=1, ge=1, le=64)
    WEBHOOK_MAX_BYTES: int = META_MAX_BYTES
    # Past this bound a webhook whose events the broker has not confirmed answers 503.
    PUBLISH_TIMEOUT_SECONDS: float = 3.0
    # SNS: only these topics are accepted when set (empty: any topic that verifies).
    SNS_ALLOWED_TOPIC_ARNS: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Hosts a SigningCertURL / SubscribeURL may point at (https only).
    SNS_CERT_HOST_PATTERN: str = DEFAULT_SNS_CERT_HOST_PATTERN
    # Extra URL prefixes trusted for certificates and subscription URLs (tests, private
    # mirrors). The signature is verified all the same; this only says where keys may come from.
    SNS_TRUSTED_CERT_URL_PREFIXES: Annotated[list[str], NoDecode] = Field(default_factory=list)
    SNS_HTTP_TIMEOUT_SECONDS: float = 5.0

    @field_validator("SNS_CERT_HOST_PATTERN")
    @classmethod
    def _valid_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"not a regular expression: {error}") from None
        return value

    _lists = field_validator(
        "SNS_ALLOWED_TOPIC_ARNS", "SNS_TRUSTED_CERT_URL_PREFIXES", mode="before"
    )(_split_list)
