"""Logging: one line per event, ``key=value`` text by default, JSON with ``LOG_FORMAT=json``.

Use ``log.info("message", extra=fields(key=value))`` to attach structured fields.
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import sys
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple, TextIO

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

_FIELDS = "mensajero_fields"
# Arguments whose text cannot change between the log call and the writer thread.
_PLAIN = frozenset({str, int, float, bool, type(None)})


def describe(error: BaseException) -> str:
    """An exception for a log line or a message: its text, or its type when it has none (a
    TimeoutError's text is empty)."""
    return str(error) or type(error).__name__


def fields(**values: Any) -> dict[str, Any]:
    """The ``extra`` for a log call: structured fields shown after the message."""
    return {_FIELDS: values}


def _render(value: Any) -> str:
    text = value if type(value) is str else str(value)
    # Three ``in`` tests, not a generator over the characters: every field of every line.
    if not text or " " in text or "=" in text or '"' in text:
        return json.dumps(text, ensure_ascii=False)
    return text


class Line(NamedTuple):
    """A log line's parts: a record's, or a hot line's (:class:`HotLog`), alike."""

    created: float
    level: str
    logger: str
    message: str
    extra: dict[str, Any]
    error: str | None = None


class LineFormatter(logging.Formatter):
    """Writes a :class:`Line`; a record is read into one."""

    def format(self, record: logging.LogRecord) -> str:
        error = self.formatException(record.exc_info) if record.exc_info else None
        extra: dict[str, Any] = getattr(record, _FIELDS, {})
        message = record.getMessage()
        return self.line(Line(record.created, record.levelname, record.name, message, extra, error))

    def line(self, parts: Line) -> str:
        raise NotImplementedError


class TextFormatter(LineFormatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self._second = -1
        self._stamp = ""

    def line(self, parts: Line) -> str:
        created = parts.created
        second = int(created)
        if second != self._second:  # most lines share their second with the one before
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        millis = int((created - second) * 1000)
        line = f"{self._stamp}.{millis:03d}Z {parts.level:<7} {self.service} {parts.message}"
        if parts.extra:
            line += " " + " ".join(
                [f"{k}={_render(v)}" for k, v in parts.extra.items() if v is not None]
            )
        if parts.error:
            line += "\n" + parts.error
        return line


class JsonFormatter(LineFormatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def line(self, parts: Line) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(parts.created, UTC).isoformat(),
            "level": parts.level.lower(),
            "service": self.service,
            "logger": parts.logger,
            "msg": parts.message,
        }
        data.update(parts.extra)
        if parts.error:
            data["exception"] = parts.error
        return json.dumps(data, ensure_ascii=False, default=str)


class BackgroundHandler(logging.Handler):
    """Formats and writes records on a thread, in batches: the event loop only appends.

    A busy gateway logs several lines per webhook; formatting them and one write+flush per line
    on the event loop cost more than the webhook itself. Waking the writer for every record was
    no better: each wake-up hands the GIL between threads (futex calls and context switches),
    which cost a busy gateway about 200 us of CPU per webhook. So the writer wakes on a timer,
    every ``interval`` seconds, and takes whatever has piled up. Lines appear within that
    interval; at exit the rest is written (a SIGKILL may lose the last few).

    A record is formatted on the writer thread, later than the call: by then an argument may
    have changed or lost what its repr() reads (aio-pika's OneShotCallback deletes its callback
    once it has run, and logs itself as an argument before). So a call whose arguments are not
    all plain strings and numbers is rendered at once, on the caller's thread; plain ones (all
    of the services' own lines) still cost only the check of their types. A record that cannot
    be formatted at all is still written, as its message and the formatting error.
    """

    def __init__(self, stream: TextIO, formatter: LineFormatter, *, interval: float = 0.05) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.lines = formatter
        self.stream = stream
        self.interval = interval
        # deque.append and popleft are atomic: no lock between the loop and the writer.
        self.records: collections.deque[logging.LogRecord | HotLine] = collections.deque()
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._write, name="log-writer", daemon=True)
        self.thread.start()
        atexit.register(self.close)

    def handle(self, record: logging.LogRecord) -> bool:
        """``Handler.handle`` without its lock: ``emit`` only appends to a deque (atomic)."""
        if self.filters and not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if args:
            if type(args) is not tuple:  # one mapping argument ("%(name)s"): rare
                _render_now(record)
            else:
                for arg in args:
                    if type(arg) is not str and type(arg) not in _PLAIN:
                        _render_now(record)
                        break
        self.records.append(record)

    def _write(self) -> None:
        while True:
            closing = self.closing.wait(self.interval)
            self._flush_pending()
            if closing:
                return

    def _flush_pending(self) -> None:
        records = self.records
        lines = []
        while records:
            record = records.popleft()
            if isinstance(record, tuple):
                lines.append(self._hot_line(record))
                continue
            try:
                lines.append(self.format(record))
            except Exception as error:
                lines.append(_unformattable(record, error))
        if lines:
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # stdout closed: nowhere left to log

    def _hot_line(self, hot: HotLine) -> str:
        created, level, logger, message, args, extra = hot
        try:
            return self.lines.line(
                Line(created, level, logger, message % args if args else message, extra)
            )
        except Exception as error:
            return f"{level} {logger} {message} (could not be formatted: {describe(error)})"

    def close(self) -> None:
        if self.thread.is_alive():
            self.closing.set()
            self.thread.join(timeout=5)
        super().close()


# A hot line as the writer gets it: created, level name, logger, message, its arguments, fields.
HotLine = tuple[float, str, str, str, tuple[object, ...], dict[str, Any]]
# ... and as its caller gives it (HotLog.info_lines): the message, its arguments, its fields.
HotParts = tuple[str, tuple[object, ...], dict[str, Any]]


class HotLog:
    """A logger's lines for a path run thousands of times a second (the gateway's lines per
    webhook): each call appends the line's parts to the writer's queue, no LogRecord made.

    A LogRecord costs about 10 us to make and pass through the logging machinery (a webhook
    logs three); the parts cost about 1 us. The line written is the same. Whenever anything
    else would see the record (another handler, a filter: pytest's caplog, say) or the writer
    is not a :class:`BackgroundHandler`, the call goes through ``logging`` as usual.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def info(self, message: str, *args: object, **values: Any) -> None:
        self._log(logging.INFO, "INFO", ((message, args, values),))

    def warning(self, message: str, *args: object, **values: Any) -> None:
        self._log(logging.WARNING, "WARNING", ((message, args, values),))

    def info_lines(self, lines: Iterable[HotParts]) -> None:
        """Several INFO lines at once, each its message, arguments and fields (a webhook's
        events, up to a thousand): the level and the handlers are looked at once for all."""
        self._log(logging.INFO, "INFO", lines)

    def _log(self, level: int, name: str, lines: Iterable[HotParts]) -> None:
        logger = self.logger
        if not logger.isEnabledFor(level):
            return
        writer = _sole_writer(logger, level)
        if writer is None:
            for message, args, values in lines:
                logger.log(level, message, *args, extra={_FIELDS: values}, stacklevel=3)
            return
        created, logger_name, append = time.time(), logger.name, writer.records.append
        for message, args, values in lines:
            for arg in args:
                if type(arg) not in _PLAIN:  # rendered now: see BackgroundHandler
                    message, args = message % args, ()
                    break
            append((created, name, logger_name, message, args, values))


def _sole_writer(logger: logging.Logger, level: int) -> BackgroundHandler | None:
    """The :class:`BackgroundHandler` a record of ``logger`` would reach, when it is the only
    thing that would see it (None otherwise: the record must go through ``logging``)."""
    if logger.filters or logger.disabled:
        return None
    found = None
    node: logging.Logger | None = logger
    while node is not None:
        for handler in node.handlers:
            if found is not None or type(handler) is not BackgroundHandler:
                return None
            if handler.filters or level < handler.level:
                return None
            found = handler
        if not node.propagate:
            break
        node = node.parent
    return found


def _render_now(record: logging.LogRecord) -> None:
    """Merge the arguments into the message, as they are now."""
    try:
        record.msg = record.getMessage()
    except Exception as error:
        record.msg = f"{record.msg} (arguments not shown: {type(error).__name__}: {error})"
    record.args = None


def _unformattable(record: logging.LogRecord, error: Exception) -> str:
    """The line of a record the formatter could not write: never lost, never a traceback."""
    stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return (
        f"{stamp}Z {record.levelname:<7} {record.name} {record.msg} "
        f"(could not be formatted: {type(error).__name__}: {error})"
    )


class MalformedRequests(logging.Filter):
    """aiohttp's lines for a request it could not parse (a bad request line, header, encoding
    or chunk), each one WARNING line without the traceback: they are the client's error, not
    ours, and any client can send them. Other errors keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError | RequestPayloadError):
            return True
        cause = error.__cause__ if isinstance(error, RequestPayloadError) else error
        reason = getattr(cause, "message", None) or str(error)
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "a client"
        record.msg = "malformed HTTP request from %s: %s"
        record.args = (peer, " ".join(str(reason).split())[:200])
        record.exc_info = None
        record.exc_text = None
        if record.levelno > logging.WARNING:
            record.levelno = logging.WARNING
            record.levelname = "WARNING"
        return True


def quiet_malformed_requests() -> None:
    """Install :class:`MalformedRequests` on aiohttp's server logger (once)."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequests) for f in server.filters):
        server.addFilter(MalformedRequests())


def setup_logging(service: str, fmt: str = "text", level: str = "INFO") -> None:
    formatter = JsonFormatter(service) if fmt == "json" else TextFormatter(service)
    handler = BackgroundHandler(sys.stdout, formatter)
    # Each record would otherwise walk the stack for its caller and ask for the process id
    # (a system call), the thread and the process name, which no formatter here shows: half
    # the cost of a log call on the event loop (the logging HOWTO's "Optimization" switches).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log is one line per webhook; keep it at WARNING unless debugging.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    quiet_malformed_requests()
