"""The Mailer port, its Amazon SES adapter (aioboto3 ``sesv2``) and a fake for tests.

The adapter makes one attempt per call (botocore's own retries are off): pacing and retrying
throttled sends with backoff is the caller's job, so every attempt is logged and counted.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from notifier.settings import Settings

# SES error codes worth another try later; anything else with a 4xx status is permanent.
RETRYABLE_CODES = frozenset(
    {
        "TooManyRequestsException",
        "ThrottlingException",
        "Throttling",
        "LimitExceededException",
        "RequestThrottled",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalServiceError",
    }
)
THROTTLING_CODES = frozenset(
    {
        "TooManyRequestsException",
        "ThrottlingException",
        "Throttling",
        "LimitExceededException",
        "RequestThrottled",
    }
)


@dataclass(frozen=True)
class Email:
    sender: str
    to: tuple[str, ...]
    subject: str
    text: str
    html: str
    reply_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class SendResult:
    message_id: str
    status_code: int
    request_id: str | None = None


class MailError(Exception):
    """A send that did not go out. ``retryable`` says whether trying later may help."""

    def __init__(
        self,
        error_type: str,
        message: str,
        *,
        retryable: bool,
        request_id: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message
        self.retryable = retryable
        self.request_id = request_id
        self.status_code = status_code

    @property
    def throttled(self) -> bool:
        return self.error_type in THROTTLING_CODES or self.status_code == 429


class Mailer(Protocol):
    async def send(self, email: Email) -> SendResult: ...


@runtime_checkable
class IdentityAdmin(Protocol):
    async def create_identities(self, identities: Iterable[str]) -> None: ...


# --------------------------------------------------------------------------- SES


class SesMailer:
    """Sends through ``sesv2.send_email`` with one long-lived client (open/close around use)."""

    def __init__(
        self,
        *,
        region: str,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        configuration_set: str | None = None,
        timeout: float = 15.0,
    ) -> None:
        # With no keys, aioboto3 follows the default chain (environment, profile, IAM role).
        self._session = aioboto3.Session(
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            region_name=region,
        )
        self._endpoint_url = endpoint_url
        self._configuration_set = configuration_set
        self._config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=timeout,
            read_timeout=timeout,
        )
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SesMailer:
        secret = settings.AWS_SECRET_ACCESS_KEY
        return cls(
            region=settings.AWS_REGION,
            endpoint_url=settings.SES_ENDPOINT_URL or None,  # "" (compose) means AWS itself
            access_key_id=settings.AWS_ACCESS_KEY_ID,
            secret_access_key=secret.get_secret_value() if secret else None,
            configuration_set=settings.SES_CONFIGURATION_SET,
            timeout=settings.SES_TIMEOUT_SECONDS,
        )

    async def open(self) -> None:
        if self._client is not None:
            return
        stack = contextlib.AsyncExitStack()
        self._client = await stack.enter_async_context(
            self._session.client("sesv2", endpoint_url=self._endpoint_url, config=self._config)
        )
        self._stack = stack

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._stack = None
        self._client = None

    async def __aenter__(self) -> SesMailer:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, email: Email) -> SendResult:
        await self.open()
        request: dict[str, Any] = {
            "FromEmailAddress": email.sender,
            "Destination": {"ToAddresses": list(email.to)},
            "Content": {
                "Simple": {
                    "Subject": {"Data": email.subject, "Charset": "UTF-8"},
                    "Body": {
                        "Text": {"Data": email.text, "Charset": "UTF-8"},
                        "Html": {"Data": email.html, "Charset": "UTF-8"},
                    },
                }
            },
        }
        if email.reply_to:
            request["ReplyToAddresses"] = list(email.reply_to)
        if self._configuration_set:
            request["ConfigurationSetName"] = self._configuration_set
        try:
            response = await self._client.send_email(**request)
        except ClientError as error:
            raise _client_error(error) from error
        except (TimeoutError, BotoCoreError, OSError) as error:
            # No answer from SES (connection, timeout, credentials not found yet): try later.
            raise MailError(type(error).__name__, str(error), retryable=True) from error
        metadata = response.get("ResponseMetadata", {})
        return SendResult(
            message_id=str(response["MessageId"]),
            status_code=int(metadata.get("HTTPStatusCode", 200)),
            request_id=metadata.get("RequestId"),
        )

    async def create_identities(self, identities: Iterable[str]) -> None:
        """Create sender identities (only for a local stand-in such as moto's server)."""
        await self.open()
        for identity in identities:
            with contextlib.suppress(ClientError):  # already there
                await self._client.create_email_identity(EmailIdentity=identity)


def _client_error(error: ClientError) -> MailError:
    response: dict[str, Any] = dict(error.response or {})
    details = response.get("Error", {})
    metadata = response.get("ResponseMetadata", {})
    code = str(details.get("Code") or "ClientError")
    status = metadata.get("HTTPStatusCode")
    status_code = int(status) if status is not None else None
    retryable = code in RETRYABLE_CODES or (status_code is not None and status_code >= 500)
    if status_code == 429:
        retryable = True
    return MailError(
        code,
        str(details.get("Message") or error),
        retryable=retryable,
        request_id=metadata.get("RequestId"),
        status_code=status_code,
    )


# --------------------------------------------------------------------------- fake


@dataclass
class FakeMailer:
    """Keeps what it sends; ``failures`` are raised, in order, before sends succeed."""

    sent: list[Email] = field(default_factory=list)
    failures: list[MailError] = field(default_factory=list)
    attempts: int = 0
    identities: set[str] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def send(self, email: Email) -> SendResult:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(email)
        return SendResult(message_id=f"fake-{next(self._ids)}", status_code=200, request_id=None)

    async def create_identities(self, identities: Iterable[str]) -> None:
        self.identities.update(identities)
