"""The Graph API port: :class:`GraphClient`, its aiohttp adapter, and a fake for unit tests."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol
from urllib.parse import quote

import aiohttp
import orjson

from shared.events import MetaError
from shared.send_ref import SendRef, tag


@dataclass(frozen=True, slots=True)
class Accepted:
    """Meta took the request: a wamid for a message, None for a read receipt."""

    wamid: str | None
    wa_id: str | None = None


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


def too_large(what: str, size: int | None, max_bytes: int) -> GraphApiError:
    """Media over the sender's size limit (SENDER_MEDIA_MAX_BYTES): final, like Meta's 131053."""
    found = f" ({size} bytes)" if size is not None else ""
    return GraphApiError(
        131053, "Media upload error", details=f"{what}{found} is larger than {max_bytes} bytes"
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
                        131053,
                        "Media upload error",
                        details=f"downloading {url} answered HTTP {response.status}",
                        http_status=response.status,
                    )
                data = await read_bounded(response, max_bytes)
                if data is None:
                    raise too_large(url, response.content_length, max_bytes)
                return data, response.content_type
        except (aiohttp.ClientError, TimeoutError) as error:
            raise GraphUnavailable(
                f"cannot download {url}: {error or type(error).__name__}"
            ) from error

    async def fetch_media(self, media_id: str, max_bytes: int) -> tuple[bytes, str | None]:
        try:
            info = await self._call("GET", f"{self.base_url}/{quote(media_id, safe='')}")
        except GraphApiError as error:
            if error.code != 100:  # 100: "Object with ID ... does not exist" (unknown, expired)
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
                f"cannot download media {media_id}: {error or type(error).__name__}"
            ) from error
        if data is None:
            raise too_large(f"media {media_id}", response.content_length, max_bytes)
        return data, mime_type if isinstance(mime_type, str) else response.content_type

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
            raise MediaGone(media_id, 131052, "Media download error", details=details)
        raise GraphApiError(131052, "Media download error", details=details, http_status=status)

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


# --------------------------------------------------------------------------- fake


@dataclass
class FakeGraphClient:
    """In memory: records every call; ``script`` holds outcomes for the next sends."""

    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    refs: list[SendRef | None] = field(default_factory=list)  # the ref of each send
    uploads: list[tuple[str, bytes, str]] = field(default_factory=list)
    script: deque[Exception | None] = field(default_factory=deque)
    downloads: dict[str, tuple[bytes, str | None]] = field(default_factory=dict)
    # Media at Meta by id (what ``fetch_media`` copies), and outcomes for the next fetches.
    media: dict[str, tuple[bytes, str | None]] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)
    fetch_script: deque[Exception | None] = field(default_factory=deque)
    upload_script: deque[Exception | None] = field(default_factory=deque)
    delay: float = 0.0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def then(self, *outcomes: Exception | None) -> FakeGraphClient:
        """Queue outcomes for the next sends: an exception to raise, or None to accept."""
        self.script.extend(outcomes)
        return self

    async def send_message(
        self, phone_number_id: str, body: dict[str, Any], ref: SendRef | None = None
    ) -> Accepted:
        self.sent.append((phone_number_id, body))
        self.refs.append(ref)
        if self.delay:
            await asyncio.sleep(self.delay)
        outcome = self.script.popleft() if self.script else None
        if outcome is not None:
            raise outcome
        if body.get("status") == "read":
            return Accepted(wamid=None)
        return Accepted(wamid=f"wamid.fake{next(self._ids)}", wa_id=str(body["to"]).lstrip("+"))

    async def upload_media(
        self, phone_number_id: str, data: bytes, mime_type: str, filename: str | None
    ) -> str:
        outcome = self.upload_script.popleft() if self.upload_script else None
        if outcome is not None:
            raise outcome
        self.uploads.append((phone_number_id, data, mime_type))
        return f"media{len(self.uploads)}"

    async def fetch_media(self, media_id: str, max_bytes: int) -> tuple[bytes, str | None]:
        self.fetched.append(media_id)
        outcome = self.fetch_script.popleft() if self.fetch_script else None
        if outcome is not None:
            raise outcome
        if media_id not in self.media:
            message = f"Unsupported get request. Object with ID '{media_id}' does not exist"
            raise MediaGone(media_id, 100, message, details=None)
        data, mime_type = self.media[media_id]
        if len(data) > max_bytes:
            raise too_large(f"media {media_id}", len(data), max_bytes)
        return data, mime_type

    async def download(self, url: str, max_bytes: int) -> tuple[bytes, str | None]:
        if url not in self.downloads:
            raise GraphApiError(131053, "Media upload error", details=f"{url} answered HTTP 404")
        return self.downloads[url]


def meta_error(code: int, title: str = "error", details: str | None = None) -> GraphApiError:
    """A Graph error as the fake raises it (tests)."""
    return GraphApiError(code, f"(#{code}) {title}", details=details)
