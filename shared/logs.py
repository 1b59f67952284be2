"""Logging: one line per event, ``key=value`` text by default, JSON with ``LOG_FORMAT=json``.

Use ``log.info("message", extra=fields(key=value))`` to attach structured fields.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any, TextIO

_FIELDS = "mensajero_fields"


def fields(**values: Any) -> dict[str, Any]:
    """The ``extra`` for a log call: structured fields shown after the message."""
    return {_FIELDS: values}


def _render(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="'):
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        millis = int(record.msecs)
        line = f"{stamp}.{millis:03d}Z {record.levelname:<7} {self.service} {record.getMessage()}"
        extra: dict[str, Any] = getattr(record, _FIELDS, {})
        if extra:
            line += " " + " ".join(f"{k}={_render(v)}" for k, v in extra.items() if v is not None)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update(getattr(record, _FIELDS, {}))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class BackgroundHandler(logging.Handler):
    """Formats and writes records on a thread, in batches: the event loop only enqueues.

    A busy gateway logs several lines per webhook; formatting them and one write+flush per line
    on the event loop cost more than the webhook itself. Lines still appear within
    milliseconds; at exit the queue is drained (a SIGKILL may lose the last few).
    """

    def __init__(self, stream: TextIO, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.stream = stream
        self.records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._write, name="log-writer", daemon=True)
        self.thread.start()
        atexit.register(self.close)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.put(record)

    def _write(self) -> None:
        running = True
        while running:
            batch = [self.records.get()]
            while len(batch) < 1000:
                try:
                    batch.append(self.records.get_nowait())
                except queue.Empty:
                    break
            lines = []
            for record in batch:
                if record is None:
                    running = False
                    continue
                try:
                    lines.append(self.format(record))
                except Exception:
                    self.handleError(record)
            if lines:
                try:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass  # stdout closed: nowhere left to log

    def close(self) -> None:
        if self.thread.is_alive():
            self.records.put(None)
            self.thread.join(timeout=5)
        super().close()


def setup_logging(service: str, fmt: str = "text", level: str = "INFO") -> None:
    formatter = JsonFormatter(service) if fmt == "json" else TextFormatter(service)
    handler = BackgroundHandler(sys.stdout, formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log is one line per webhook; keep it at WARNING unless debugging.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)
