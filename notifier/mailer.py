"""The Mailer port and its Amazon SES adapter (aioboto3 ``sesv2``); the fake is in tests/fakes.

The adapter makes one attempt per call (botocore's own retries are off): pacing and retrying
throttled sends with backoff is the caller's job, so every attempt is logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared.logs import fields

if TYPE_CHECKING:
    from notifier.settings import Settings

log = logging.getLogger("mensajero.notifier")

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
    """Sends one email per call; opened at start and closed at stop (a resource)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, email: Email) -> SendResult: ...

    async def create_identities(self, identities: Iterable[str]) -> None:
        """Create sender identities (only for a local stand-in such as moto's server)."""


# --------------------------------------------------------------------------- SES


class SesMailer:
    """Sends through ``sesv2.send_email`` with one long-lived client, from start to close."""

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

    async def start(self) -> None:
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
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, email: Email) -> SendResult:
        await self.start()
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
        await self.start()
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


class SenderIdentities:
    """``make run`` with moto's server: the sender identities created at start, so that SES
    accepts them (a resource; waits up to the startup timeout for moto to come up)."""

    def __init__(self, mailer: Mailer, identities: Iterable[str], timeout: float) -> None:
        self.mailer = mailer
        self.identities = sorted(set(identities))
        self.timeout = timeout

    async def start(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                await self.mailer.create_identities(self.identities)
            except Exception as error:
                if time.monotonic() >= deadline:
                    log.warning(
                        "could not create the sandbox sender identities; sends will be rejected",
                        extra=fields(error=str(error) or type(error).__name__),
                    )
                    return
                await asyncio.sleep(0.5)
                continue
            log.info(
                "sandbox sender identities created",
                extra=fields(identities=",".join(self.identities)),
            )
            return

    async def close(self) -> None:
        pass
