"""The peer the gateway is measured against: pywa's async receiver on uvicorn, doing nothing.

Run by ``bench/receivers_bench.py`` with the Python of a venv of its own (pywa, FastAPI,
uvicorn, uvloop, httptools: never the project's dependencies). It checks
``X-Hub-Signature-256`` and parses every update into pywa's types (validate_updates) as pywa
does by default, calls a handler that does nothing, and answers 200: it stores nothing.

    python bench/pywa_receiver.py <port> [workers]
"""

from __future__ import annotations

import os
import sys

import uvicorn
from fastapi import FastAPI
from pywa_async import WhatsApp, types

SECRET = os.environ.get("BENCH_APP_SECRET", "bench-app-secret")

app = FastAPI()
wa = WhatsApp(
    phone_id="106540352242922",
    token="bench-token",
    server=app,
    webhook_endpoint="/webhook/whatsapp",
    verify_token="bench",
    app_secret=SECRET,
    validate_updates=True,
)


@wa.on_message()
async def on_message(_client: WhatsApp, _message: types.Message) -> None:
    return None


@wa.on_message_status()
async def on_status(_client: WhatsApp, _status: types.MessageStatus) -> None:
    return None


if __name__ == "__main__":
    port = int(sys.argv[1])
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    uvicorn.run(
        "pywa_receiver:app" if workers > 1 else app,
        host="127.0.0.1",
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        app_dir=os.path.dirname(os.path.abspath(__file__)),
    )
