"""The SNS host over HTTPS: signing certificates and SubscribeURLs, fetched with one client
session (opened at start, closed at stop)."""

from __future__ import annotations

from typing import Protocol

import aiohttp

from gateway.sns import MAX_CERT_BYTES, SnsRejected, SnsUnavailable
from shared.logs import describe


class Fetcher(Protocol):
    """The port: a URL's body (:class:`SnsRejected` for an answer that is not 200,
    :class:`SnsUnavailable` when the host cannot be reached)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def fetch(self, url: str) -> bytes: ...


class HttpFetcher:
    """The real one: no redirects followed, at most a certificate's size read."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def fetch(self, url: str) -> bytes:
        if self._session is None:
            raise SnsUnavailable(f"cannot fetch {url}: the gateway is not started")
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise SnsRejected(f"{url} answered HTTP {response.status}")
                return await response.content.read(MAX_CERT_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise SnsUnavailable(f"cannot fetch {url}: {describe(error)}") from error
