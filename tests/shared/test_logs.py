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
