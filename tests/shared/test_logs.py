"""The log writer: every line reaches the stream, in order, in text or JSON."""

from __future__ import annotations

import io
import json
import logging

from shared.logs import BackgroundHandler, JsonFormatter, TextFormatter, fields


def emit_through(handler: BackgroundHandler, count: int) -> None:
    logger = logging.getLogger(f"test.logs.{id(handler)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("=== WEBHOOK WHATSAPP RECIBIDO ===")
        for i in range(count):
            logger.info("Mensaje recibido de +5491135722871 (Usuario): Hola", extra=fields(n=i))
    finally:
        logger.removeHandler(handler)
        handler.close()  # drains what is still pending


def test_text_lines_arrive_in_order_after_close() -> None:
    stream = io.StringIO()
    emit_through(BackgroundHandler(stream, TextFormatter("gateway"), interval=10), 500)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 501
    assert lines[0].endswith("INFO    gateway === WEBHOOK WHATSAPP RECIBIDO ===")
    assert lines[1].endswith("Mensaje recibido de +5491135722871 (Usuario): Hola n=0")
    assert [int(line.rsplit("n=", 1)[1]) for line in lines[1:]] == list(range(500))


def test_json_lines_carry_the_fields() -> None:
    stream = io.StringIO()
    emit_through(BackgroundHandler(stream, JsonFormatter("sender")), 3)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r.get("n") for r in records] == [None, 0, 1, 2]
    assert records[1]["service"] == "sender" and records[1]["level"] == "info"
    assert records[1]["msg"] == "Mensaje recibido de +5491135722871 (Usuario): Hola"


def test_values_with_spaces_are_quoted() -> None:
    stream = io.StringIO()
    handler = BackgroundHandler(stream, TextFormatter("x"))
    logger = logging.getLogger("test.logs.quote")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("refused", extra=fields(reason="body over 3 MB", status=413))
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert stream.getvalue().rstrip().endswith('refused reason="body over 3 MB" status=413')


def _render_reference(value: object) -> str:
    # The rule as first written: quote empty text and text with a space, '=' or '"'.
    text = str(value)
    if text == "" or any(c in text for c in ' ="'):
        return json.dumps(text, ensure_ascii=False)
    return text


class _Shown(str):
    def __str__(self) -> str:
        return "shown as"


def test_field_rendering_quotes_what_would_break_the_line() -> None:
    from shared.logs import _render

    values: list[object] = [
        "",
        "plain",
        "a b",
        "k=v",
        'say "hi"',
        "ñandú",
        "tab\there",
        "x\ny",
        413,
        0,
        1.5,
        True,
        ["a", 1],
        {"k": "v"},
        _Shown("s"),
    ]
    for value in values:
        assert _render(value) == _render_reference(value), value


class _OneShot:
    """Like aio-pika's OneShotCallback: its repr reads an attribute deleted once it has run."""

    __slots__ = ("callback",)

    def __init__(self) -> None:
        self.callback = "close"

    def __repr__(self) -> str:
        return f"<OneShot cb={self.callback!r}>"


def test_a_line_whose_argument_changes_after_the_call_is_written_as_it_was(
    capsys,
) -> None:
    """Records are formatted later on the writer thread: the call's arguments may have changed
    or lost attributes by then (reconnects: "Callback %r error"). No line is lost."""
    stream = io.StringIO()
    handler = BackgroundHandler(stream, TextFormatter("x"), interval=10)
    logger = logging.getLogger("test.logs.oneshot")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    shown = ["before"]
    callback = _OneShot()

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("cannot show")

    try:
        logger.error("Callback %r error: %s", callback, "ConnectionError")
        logger.info("list %s", shown)
        logger.info("field", extra=fields(value=Broken()))
        logger.info("args %s", Broken())
        del callback.callback  # what OneShotCallback does once it has run
        shown.append("after")
    finally:
        logger.removeHandler(handler)
        handler.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4, lines
    assert lines[0].endswith("Callback <OneShot cb='close'> error: ConnectionError")
    assert lines[1].endswith("list ['before']")
    assert " field" in lines[2] and "cannot show" in lines[2]
    assert " args %s" in lines[3] and "cannot show" in lines[3]
    assert "Logging error" not in capsys.readouterr().err


async def test_a_malformed_request_is_one_warning_without_traceback(caplog) -> None:
    import asyncio

    from aiohttp import web

    from shared.logs import quiet_malformed_requests
    from tests.services import running

    quiet_malformed_requests()
    quiet_malformed_requests()  # installing twice changes nothing
    app = web.Application()
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    garbage = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ]
    async with running(app) as url:
        host, port = url.removeprefix("http://").split(":")
        for request in garbage:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(request)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), answer
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(records) == len(garbage), [r.getMessage() for r in records]
    # aiohttp itself logs TLS (or other non-HTTP bytes) opening a connection at DEBUG, as noise
    # of the open internet; kept so, as one line too.
    assert [r.levelno for r in records] == [logging.DEBUG] + [logging.WARNING] * 3
    for record in records:
        assert record.exc_info is None and not record.exc_text
        assert record.getMessage().startswith("malformed HTTP request from 127.0.0.1: ")
        assert "\n" not in record.getMessage()


def test_describe_names_an_exception_without_text() -> None:
    from shared.logs import describe

    assert describe(TimeoutError()) == "TimeoutError"
    assert describe(OSError("connection refused")) == "connection refused"
