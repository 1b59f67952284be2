"""The aiohttp adapter's ``fetch_media`` against a small stand-in for Meta's media endpoints:
the lookup and the download carry the token, and each answer maps to the sender's policy."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web

from sender.graph import AiohttpGraphClient, GraphApiError, GraphUnavailable, MediaGone
from tests.services import running

TOKEN = "t0ken"
DATA = bytes(range(256)) * 2048  # 512 KiB: several network reads


def meta_error(code: int, message: str, status: int = 400) -> web.Response:
    body = {"error": {"message": message, "type": "OAuthException", "code": code}}
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def lookup(request: web.Request) -> web.Response:
    if request.headers.get("Authorization") != f"Bearer {TOKEN}":
        return meta_error(190, "Invalid OAuth access token.", 401)
    media_id = request.match_info["media_id"]
    if media_id == "unknown":
        return meta_error(100, f"Unsupported get request. Object with ID '{media_id}'")
    if media_id == "busy":
        return meta_error(131000, "Something went wrong", 500)
    size = 10**9 if media_id == "huge" else len(DATA)
    url = request.url.origin().with_path(f"/file/{media_id}")
    info = {"url": str(url), "mime_type": "image/jpeg", "file_size": size, "id": media_id}
    if media_id == "chunked":
        del info["file_size"]
    return web.Response(body=orjson.dumps(info), content_type="application/json")


async def download(request: web.Request) -> web.StreamResponse:
    media_id = request.match_info["media_id"]
    public = media_id.startswith("public")  # someone else's server: no token
    if not public and request.headers.get("Authorization") != f"Bearer {TOKEN}":
        return meta_error(190, "Invalid OAuth access token.", 401)
    if media_id == "deleted":
        return web.Response(status=404, text="not found")
    if media_id == "flaky":
        return web.Response(status=503, text="unavailable")
    if media_id == "forbidden":
        return web.Response(status=403, text="no")
    if media_id.endswith("chunked"):  # no size anywhere: only counting the bytes read can stop it
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(DATA), 64 * 1024):
            await response.write(DATA[start : start + 64 * 1024])
        await response.write_eof()
        return response
    return web.Response(body=DATA, content_type="image/jpeg")


@pytest.fixture
async def graph() -> AsyncIterator[AiohttpGraphClient]:
    app = web.Application()
    app.router.add_get("/v23.0/{media_id}", lookup)
    app.router.add_get("/file/{media_id}", download)
    async with running(app) as url:
        client = AiohttpGraphClient(f"{url}/v23.0", TOKEN, timeout=5.0)
        await client.start()
        try:
            yield client
        finally:
            await client.close()


async def test_fetch_media_looks_up_and_downloads_with_the_token(
    graph: AiohttpGraphClient,
) -> None:
    assert await graph.fetch_media("123", len(DATA)) == (DATA, "image/jpeg")


@pytest.mark.parametrize(
    ("media_id", "expected", "code"),
    [
        ("unknown", MediaGone, 100),  # the lookup: unknown or expired id
        ("deleted", MediaGone, 131052),  # the URL is gone
        ("forbidden", GraphApiError, 131052),  # any other refusal of the download: final
        ("busy", GraphApiError, 131000),  # Meta's own error: its code decides (retry)
        ("flaky", GraphUnavailable, None),  # a bare 5xx: retry
        ("huge", GraphApiError, 131053),  # Meta's file_size over the limit: no download
    ],
)
async def test_fetch_media_errors(
    graph: AiohttpGraphClient, media_id: str, expected: type[Exception], code: int | None
) -> None:
    with pytest.raises(expected) as raised:
        await graph.fetch_media(media_id, 1024 * 1024)
    if code is not None:
        assert isinstance(raised.value, GraphApiError) and raised.value.code == code


@pytest.mark.parametrize("media_id", ["123", "chunked"])
async def test_fetch_media_stops_reading_over_the_limit(
    graph: AiohttpGraphClient, media_id: str
) -> None:
    assert await graph.fetch_media(media_id, len(DATA)) == (DATA, "image/jpeg")
    with pytest.raises(GraphApiError, match="larger than 1000 bytes") as raised:
        await graph.fetch_media(media_id, 1000)
    assert raised.value.code == 131053


async def test_a_rejected_token_is_metas_190(graph: AiohttpGraphClient) -> None:
    other = AiohttpGraphClient(graph.base_url, "expired", timeout=5.0)
    await other.start()
    try:
        with pytest.raises(GraphApiError) as raised:
            await other.fetch_media("123", len(DATA))
    finally:
        await other.close()
    assert raised.value.code == 190 and not isinstance(raised.value, MediaGone)


async def test_download_from_a_url_reads_the_whole_file(graph: AiohttpGraphClient) -> None:
    """``upload_url`` media: the whole body, not the first network read (a regression)."""
    url = graph.base_url.replace("/v23.0", "/file/public")
    assert await graph.download(url, len(DATA)) == (DATA, "image/jpeg")
    assert await graph.download(f"{url}-chunked", len(DATA)) == (DATA, "image/jpeg")
    with pytest.raises(GraphApiError, match="larger than"):
        await graph.download(f"{url}-chunked", len(DATA) - 1)
