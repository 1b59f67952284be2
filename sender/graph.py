"""The Graph API port: :class:`GraphClient`, and its aiohttp adapter (the fake, for unit tests:
``tests/fakes/sender.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn, Protocol
from urllib.parse import quote

import aiohttp
import orjson

from sender.policy import MEDIA_DOWNLOAD_ERROR, MEDIA_UPLOAD_ERROR, UNKNOWN_OBJECT
from sender.settings import Settings
from shared.events import MetaError
from shared.logs import describe
from shared.send_ref import SendRef, tag


@dataclass(frozen=True, slots=True)
class Accepted:
    """Meta took the request: a wamid for a message, None for a read receipt."""

    wamid: str | None
    wa_id: str | None = None


TEMPLATE_FIELDS = "name,language,status,category,quality_score,id"


class GraphApiError(Exception):
    """Meta answered with an error object (branch on ``code``, not on the HTTP status)."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        details: str | None = None,
        http_status: int = 400,
        fbtrace_id: str | None = None,
    ) -> None:
        super().__init__(f"({code}) {message}" + (f": {details}" if details else ""))
        self.code = code
        self.message = message
        self.details = details
        self.http_status = http_status
        self.fbtrace_id = fbtrace_id

    @property
    def title(self) -> str:
        """Meta's message without its ``(#code)`` prefix."""
        prefix = f"(#{self.code}) "
        return self.message[len(prefix) :] if self.message.startswith(prefix) else self.message

    def to_meta_error(self) -> MetaError:
        return MetaError(
            code=self.code, title=self.title, message=self.message, details=self.details
        )


class GraphUnavailable(Exception):
    """No answer from Meta we can read: a timeout, a connection error or a bare 5xx."""


class MediaGone(GraphApiError):
    """The media to copy is not at Meta: an unknown or expired id, or its URL is gone (final)."""

    def __init__(self, media_id: str, code: int, message: str, *, details: str | None) -> None:
        super().__init__(code, message, details=details)
        self.media_id = media_id


class GraphClient(Protocol):
    """Meta's Graph API (a resource: started and closed with the service)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send_message(
        self, phone_number_id: str, body: dict[str, Any], ref: SendRef | None = None
    ) -> Accepted:
        """POST the message. ``ref`` names the command and try in the data Meta echoes in the
        message's statuses (shared.send_ref), so a status can tell whose it is when this
        call's answer is lost."""
        ...

    async def upload_media(
        self, phone_number_id: str, data: bytes, mime_type: str, filename: str | None
    ) -> str: ...

    async def download(self, url: str, max_bytes: int) -> tuple[bytes, str | None]: ...

    async def fetch_media(self, media_id: str, max_bytes: int) -> tuple[bytes, str | None]:
        """Media held by Meta (e.g. a user's photo): its bytes and MIME type.

        ``GET /<media_id>`` for its URL, then the URL with the access token. Raises
        :class:`MediaGone` when the id is unknown or expired, :class:`GraphApiError` for other
        answers of Meta (131053 when larger than ``max_bytes``), :class:`GraphUnavailable` when
        Meta cannot be reached.
        """
        ...

    async def list_templates(self, waba_id: str) -> list[dict[str, Any]]:
        """Every message template of the account (``GET /<waba_id>/message_templates``, all
        pages), with name, language, status, category, quality_score and id."""
        ...

    async def create_template(self, waba_id: str, template: dict[str, Any]) -> dict[str, Any]:
        """``POST /<waba_id>/message_templates``: Meta's answer (``id``, ``status``, ...)."""
        ...


def too_large(what: str, size: int | None, max_bytes: int) -> GraphApiError:
    """Media over the sender's size limit (SENDER_MEDIA_MAX_BYTES): final, like Meta's 131053."""
    found = f" ({size} bytes)" if size is not None else ""
    return GraphApiError(
        MEDIA_UPLOAD_ERROR,
        "Media upload error",
        details=f"{what}{found} is larger than {max_bytes} bytes",
    )


async def read_bounded(response: aiohttp.ClientResponse, max_bytes: int) -> bytes | None:
    """The whole body, or None as soon as it is over ``max_bytes`` (never reads further)."""
    if response.content_length is not None and response.content_length > max_bytes:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > max_bytes:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def parse_error(status: int, payload: Any) -> GraphApiError | None:
    """Meta's ``{"error": {...}}`` as an exception, or None when the body is not one."""
    if not isinstance(payload, dict) or not isinstance(payload.get("error"), dict):
        return None
    error = payload["error"]
    code = error.get("code")
    if not isinstance(code, int):
        return None
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    if details is None:
        details = error.get("error_user_msg")  # the template API says it here
    return GraphApiError(
        code,
        str(error.get("message") or ""),
        details=str(details) if details is not None else None,
        http_status=status,
        fbtrace_id=error.get("fbtrace_id"),
    )


class AiohttpGraphClient:
    """The Graph API over one pooled aiohttp session, bearer token from the settings."""

    def __init__(
        self, base_url: str, token: str, *, timeout: float = 10.0, connections: int = 256
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AiohttpGraphClient:
        return cls(
            settings.graph_base,
            settings.META_WA_ACCESS_TOKEN,
            timeout=settings.SENDER_REQUEST_TIMEOUT_SECONDS,
            connections=settings.SENDER_CONCURRENCY,
        )

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._connections, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers={"Authorization": f"Bearer {self._token}"},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("GraphClient is not started")
        return self._session

    async def send_message(
        self, phone_number_id: str, body: dict[str, Any], ref: SendRef | None = None
    ) -> Accepted:
        if ref is not None:
            tagged = tag(ref, body.get("biz_opaque_callback_data"))
            if tagged is not None:
                body = {**body, "biz_opaque_callback_data": tagged}
        payload = await self._call(
            "POST",
            f"{self.base_url}/{phone_number_id}/messages",
            data=orjson.dumps(body),
            headers={"Content-Type": "application/json"},
        )
        messages = payload.get("messages") if isinstance(payload, dict) else None
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            contacts = payload.get("contacts") or [{}]
            wa_id = contacts[0].get("wa_id") if isinstance(contacts[0], dict) else None
            return Accepted(wamid=str(messages[0]["id"]), wa_id=wa_id)
        if isinstance(payload, dict) and payload.get("success") is True:
            return Accepted(wamid=None)
        raise GraphUnavailable(f"unexpected answer from the Graph API: {str(payload)[:200]}")

    async def upload_media(
        self, phone_number_id: str, data: bytes, mime_type: str, filename: str | None
    ) -> str:
        form = aiohttp.FormData()
        form.add_field("messaging_product", "whatsapp")
        form.add_field("type", mime_type)
        form.add_field("file", data, content_type=mime_type, filename=filename or "file")
        payload = await self._call("POST", f"{self.base_url}/{phone_number_id}/media", data=form)
        if isinstance(payload, dict) and payload.get("id"):
            return str(payload["id"])
        raise GraphUnavailable(f"unexpected answer to a media upload: {str(payload)[:200]}")

    async def download(self, url: str, max_bytes: int) -> tuple[bytes, str | None]:
        """Fetch media to upload (without the bearer token: it is someone else's server)."""
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.get(url) as response,
            ):
                if response.status >= 500:
                    raise GraphUnavailable(f"media URL answered HTTP {response.status}")
                if response.status >= 400:
                    raise GraphApiError(
                        MEDIA_UPLOAD_ERROR,
                        "Media upload error",
                        details=f"downloading {url} answered HTTP {response.status}",
                        http_status=response.status,
                    )
                data = await read_bounded(response, max_bytes)
                if data is None:
                    raise too_large(url, response.content_length, max_bytes)
                return data, response.content_type
        except (aiohttp.ClientError, TimeoutError) as error:
            raise GraphUnavailable(f"cannot download {url}: {describe(error)}") from error

    async def fetch_media(self, media_id: str, max_bytes: int) -> tuple[bytes, str | None]:
        try:
            info = await self._call("GET", f"{self.base_url}/{quote(media_id, safe='')}")
        except GraphApiError as error:
            if error.code != UNKNOWN_OBJECT:
                raise
            raise MediaGone(media_id, error.code, error.message, details=error.details) from error
        url = info.get("url") if isinstance(info, dict) else None
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise GraphUnavailable(f"unexpected answer to a media lookup: {str(info)[:200]}")
        assert isinstance(info, dict)
        size = str(info.get("file_size") or "")
        if size.isdigit() and int(size) > max_bytes:
            raise too_large(f"media {media_id}", int(size), max_bytes)
        mime_type = info.get("mime_type")
        try:
            # The session sends the access token: Meta's media URLs need it (and live 5 min).
            async with self.session.get(url) as response:
                if response.status >= 400:
                    raw = await response.content.read(64 * 1024)
                    self._download_error(media_id, response.status, raw)
                data = await read_bounded(response, max_bytes)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise GraphUnavailable(
                f"cannot download media {media_id}: {describe(error)}"
            ) from error
        if data is None:
            raise too_large(f"media {media_id}", response.content_length, max_bytes)
        return data, mime_type if isinstance(mime_type, str) else response.content_type

    async def list_templates(self, waba_id: str) -> list[dict[str, Any]]:
        url: str | None = (
            f"{self.base_url}/{quote(waba_id, safe='')}/message_templates"
            f"?fields={TEMPLATE_FIELDS}&limit=100"
        )
        found: list[dict[str, Any]] = []
        while url:
            page = await self._call("GET", url)
            if not isinstance(page, dict) or not isinstance(page.get("data"), list):
                raise GraphUnavailable(f"unexpected answer to a template list: {str(page)[:200]}")
            found.extend(item for item in page["data"] if isinstance(item, dict))
            paging = page.get("paging")
            following = paging.get("next") if isinstance(paging, dict) else None
            url = following if isinstance(following, str) else None
        return found

    async def create_template(self, waba_id: str, template: dict[str, Any]) -> dict[str, Any]:
        answer = await self._call(
            "POST",
            f"{self.base_url}/{quote(waba_id, safe='')}/message_templates",
            data=orjson.dumps(template),
            headers={"Content-Type": "application/json"},
        )
        if not isinstance(answer, dict):
            raise GraphUnavailable(f"unexpected answer to a template creation: {str(answer)[:200]}")
        return answer

    @staticmethod
    def _download_error(media_id: str, status: int, raw: bytes) -> NoReturn:
        if status >= 500:
            raise GraphUnavailable(f"the URL of media {media_id} answered HTTP {status}")
        try:
            payload = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            payload = None
        api_error = parse_error(status, payload)
        if api_error is not None:
            raise api_error  # a token problem (190) goes through the usual policy
        details = f"the URL of media {media_id} answered HTTP {status}"
        if status in (404, 410):
            raise MediaGone(media_id, MEDIA_DOWNLOAD_ERROR, "Media download error", details=details)
        raise GraphApiError(
            MEDIA_DOWNLOAD_ERROR, "Media download error", details=details, http_status=status
        )

    async def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            async with self.session.request(method, url, **kwargs) as response:
                raw = await response.read()
                status = response.status
        except TimeoutError as error:
            raise GraphUnavailable("the Graph API did not answer in time") from error
        except aiohttp.ClientError as error:
            raise GraphUnavailable(f"Graph API connection error: {error}") from error
        try:
            payload = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            payload = None
        if 200 <= status < 300:
            return payload
        api_error = parse_error(status, payload)
        if api_error is not None:
            raise api_error
        raise GraphUnavailable(f"the Graph API answered HTTP {status} without an error object")
