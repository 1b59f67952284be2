"""Hot lines (:class:`shared.logs.HotLog`): the same line as through ``logging``, and through
``logging`` whenever anything else would see the record."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from shared.logs import (
    BackgroundHandler,
    HotLog,
    HotParts,
    JsonFormatter,
    LineFormatter,
    TextFormatter,
)

RUNBOOK = "Mensaje recibido de %s (%s): %s"
ARGS = ("+5491135722871", "Usuario", "Hola")
FIELDS = {"event_id": "abc", "wamid": "wamid.1", "reason": "two words", "gone": None}


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger that does not propagate; each test gives it its handlers (:func:`_only`)."""
    found = logging.getLogger("test.hotlog")
    found.propagate = False
    found.setLevel(logging.INFO)
    yield found
    found.handlers.clear()
    found.filters.clear()
    found.propagate = True


def _only(logger: logging.Logger, *handlers: logging.Handler) -> None:
    """``handlers`` alone on ``logger``: pytest attaches its capture handler to every logger
    that does not propagate, as each test starts."""
    logger.handlers[:] = handlers


def _written(logger: logging.Logger, formatter: LineFormatter, *, hot: bool) -> list[str]:
    stream = io.StringIO()
    handler = BackgroundHandler(stream, formatter, interval=10)
    _only(logger, handler)
    try:
        if hot:
            HotLog(logger).info(RUNBOOK, *ARGS, **FIELDS)
            HotLog(logger).warning("webhook update skipped", field="messages")
            HotLog(logger).info("=== WEBHOOK WHATSAPP RECIBIDO ===")
        else:
            logger.info(RUNBOOK, *ARGS, extra={"mensajero_fields": FIELDS})
            logger.warning(
                "webhook update skipped", extra={"mensajero_fields": {"field": "messages"}}
            )
            logger.info("=== WEBHOOK WHATSAPP RECIBIDO ===")
        queued = list(handler.records)
    finally:
        logger.removeHandler(handler)
        handler.close()
    if hot:
        assert all(type(item) is tuple for item in queued), queued  # no LogRecord was made
    return stream.getvalue().splitlines()


def _message(line: str) -> str:
    """What follows the service ``x`` in a text line."""
    return line.split(" x ", 1)[1]


def _without_time(line: str) -> str:
    return line.split(" ", 1)[1]


def test_a_hot_line_is_written_as_the_logging_line(logger: logging.Logger) -> None:
    hot = _written(logger, TextFormatter("gateway"), hot=True)
    plain = _written(logger, TextFormatter("gateway"), hot=False)
    assert [_without_time(line) for line in hot] == [_without_time(line) for line in plain]
    assert _without_time(hot[0]) == (
        "INFO    gateway Mensaje recibido de +5491135722871 (Usuario): Hola"
        ' event_id=abc wamid=wamid.1 reason="two words"'
    )
    assert _without_time(hot[1]) == "WARNING gateway webhook update skipped field=messages"


def test_a_hot_line_in_json_carries_level_logger_and_fields(logger: logging.Logger) -> None:
    hot = [json.loads(line) for line in _written(logger, JsonFormatter("gateway"), hot=True)]
    plain = [json.loads(line) for line in _written(logger, JsonFormatter("gateway"), hot=False)]
    for record in hot + plain:
        record.pop("ts")
    assert hot == plain
    assert hot[0]["msg"] == "Mensaje recibido de +5491135722871 (Usuario): Hola"
    assert hot[0]["logger"] == "test.hotlog" and hot[1]["level"] == "warning"


def test_hot_lines_go_through_logging_when_caplog_listens(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    _only(logger)
    logger.propagate = True  # up to the root, where caplog's handler is
    with caplog.at_level(logging.INFO, logger="test.hotlog"):
        HotLog(logger).info(RUNBOOK, *ARGS, wamid="wamid.1")
    (record,) = [r for r in caplog.records if r.name == "test.hotlog"]
    assert record.getMessage() == "Mensaje recibido de +5491135722871 (Usuario): Hola"
    assert record.mensajero_fields == {"wamid": "wamid.1"}  # type: ignore[attr-defined]


def test_a_filter_or_a_second_handler_sends_the_line_through_logging(
    logger: logging.Logger,
) -> None:
    stream = io.StringIO()
    writer = BackgroundHandler(stream, TextFormatter("x"), interval=10)
    seen: list[logging.LogRecord] = []

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    _only(logger, writer, Seen())
    try:
        HotLog(logger).info("one")
        logger.handlers.pop()
        logger.addFilter(lambda record: record.getMessage() != "dropped")
        HotLog(logger).info("dropped")
        HotLog(logger).info("two")
    finally:
        logger.removeHandler(writer)
        writer.close()
    assert [r.getMessage() for r in seen] == ["one"]
    assert [_message(line) for line in stream.getvalue().splitlines()] == ["one", "two"]


def test_a_disabled_level_writes_nothing(logger: logging.Logger) -> None:
    logger.setLevel(logging.WARNING)
    lines = _written(logger, TextFormatter("x"), hot=True)
    assert len(lines) == 1
    assert [_message(line) for line in lines] == ["webhook update skipped field=messages"]


def test_an_argument_that_may_change_is_rendered_at_the_call(logger: logging.Logger) -> None:
    stream = io.StringIO()
    writer = BackgroundHandler(stream, TextFormatter("x"), interval=10)
    _only(logger, writer)
    state = ["before"]
    try:
        HotLog(logger).info("state %s", state)
        state[0] = "after"
    finally:
        logger.removeHandler(writer)
        writer.close()
    assert stream.getvalue().rstrip().endswith("state ['before']")


def test_a_line_whose_arguments_do_not_fit_is_still_written(logger: logging.Logger) -> None:
    stream = io.StringIO()
    writer = BackgroundHandler(stream, TextFormatter("x"), interval=10)
    _only(logger, writer)
    try:
        HotLog(logger).info("two %s %s", "only-one")
    finally:
        logger.removeHandler(writer)
        writer.close()
    assert "two %s %s" in stream.getvalue() and "could not be formatted" in stream.getvalue()


def test_lines_logged_at_once_are_written_as_lines_logged_one_by_one(
    logger: logging.Logger,
) -> None:
    lines: list[HotParts] = [
        (RUNBOOK, ARGS, FIELDS),
        ("event published", (), {"type": "t", "status": "read"}),
    ]

    def written(at_once: bool) -> list[str]:
        stream = io.StringIO()
        handler = BackgroundHandler(stream, TextFormatter("x"), interval=10)
        _only(logger, handler)
        try:
            if at_once:
                HotLog(logger).info_lines(lines)
            else:
                for message, args, values in lines:
                    HotLog(logger).info(message, *args, **values)
            queued = list(handler.records)
        finally:
            logger.removeHandler(handler)
            handler.close()
        assert all(type(item) is tuple for item in queued), queued
        return [_message(line) for line in stream.getvalue().splitlines()]

    assert written(at_once=True) == written(at_once=False)
    assert written(at_once=True)[1] == "event published type=t status=read"


def test_lines_logged_at_once_go_through_logging_when_caplog_listens(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    _only(logger)
    logger.propagate = True
    with caplog.at_level(logging.INFO, logger="test.hotlog"):
        HotLog(logger).info_lines([(RUNBOOK, ARGS, {"wamid": "wamid.1"}), ("two", (), {})])
    records = [r for r in caplog.records if r.name == "test.hotlog"]
    assert [r.getMessage() for r in records] == [
        "Mensaje recibido de +5491135722871 (Usuario): Hola",
        "two",
    ]
    assert records[0].mensajero_fields == {"wamid": "wamid.1"}  # type: ignore[attr-defined]
