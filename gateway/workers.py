"""Several gateway processes on one port: a small supervisor, for ``GATEWAY_WORKERS`` > 1.

One Python process tops out at one core. With ``GATEWAY_WORKERS=N``, ``python -m gateway``
starts N worker processes that listen on GATEWAY_PORT together (SO_REUSEPORT: the kernel spreads
new connections between them). The supervisor:

- forwards SIGTERM/SIGINT to the workers once and waits for their graceful stop (in-flight
  webhooks finish, within SHUTDOWN_GRACE_SECONDS);
- restarts a worker that dies, unless workers keep dying (more than ``RESTART_LIMIT`` deaths
  within ``RESTART_WINDOW_SECONDS``): then it stops the rest and exits 1, for the orchestrator;
- makes ``/metrics`` the sum over every worker, past ones included: prometheus_client's
  multiprocess mode, in ``PROMETHEUS_MULTIPROC_DIR`` (a temporary directory unless it is set).

Workers run in their own session, so a terminal's Ctrl-C reaches them only through the
supervisor; a worker whose supervisor vanished (SIGKILL) stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from types import FrameType

from aiohttp import web

from gateway.app import create_app
from gateway.settings import Settings
from shared.logs import fields, setup_logging
from shared.service import run
from shared.settings import load_or_exit

log = logging.getLogger("mensajero.gateway.workers")

# Set in a worker's environment (its index): the process serves instead of supervising.
WORKER_ENV = "MENSAJERO_GATEWAY_WORKER"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
RESTART_LIMIT = 5
RESTART_WINDOW_SECONDS = 60.0
POLL_SECONDS = 0.1
PARENT_CHECK_SECONDS = 1.0
# Exit code of a process whose settings are invalid (shared.settings.load_or_exit).
CONFIG_EXIT = 2


def main() -> None:
    """``python -m gateway``: one process serving, or a supervisor of GATEWAY_WORKERS."""
    if os.environ.get(WORKER_ENV) is not None:
        run(Settings, _worker_app, port_setting="GATEWAY_PORT", reuse_port=True)
        return
    settings = load_or_exit(Settings)
    if settings.GATEWAY_WORKERS == 1:
        run(Settings, create_app, port_setting="GATEWAY_PORT")
        return
    setup_logging(settings.service_name, settings.LOG_FORMAT, settings.LOG_LEVEL)
    raise SystemExit(Supervisor(settings).run())


def _worker_app(settings: Settings) -> web.Application:
    app = create_app(settings)
    app.cleanup_ctx.append(_stop_when_orphaned)
    return app


async def _stop_when_orphaned(_app: web.Application) -> AsyncIterator[None]:
    """Stop gracefully when the supervisor is gone (it cannot forward a signal any more)."""
    parent = os.getppid()

    async def watch() -> None:
        # Polled: nothing signals a parent's death to a child (prctl's PDEATHSIG is Linux-only).
        while True:
            await asyncio.sleep(PARENT_CHECK_SECONDS)
            if os.getppid() != parent:
                break
        log.error("supervisor is gone; stopping this worker")
        signal.raise_signal(signal.SIGTERM)

    task = asyncio.create_task(watch())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.count = settings.GATEWAY_WORKERS
        self.stopping = False
        self.workers: dict[int, subprocess.Popen[bytes]] = {}
        self.deaths: deque[float] = deque()
        given = os.environ.get(MULTIPROC_ENV)
        self.own_metrics_dir = not given
        self.metrics_dir = Path(given or tempfile.mkdtemp(prefix="mensajero-gateway-metrics-"))

    def run(self) -> int:
        try:
            self._reset_metrics()
        except OSError as error:
            print(
                f"gateway: {MULTIPROC_ENV} ({self.metrics_dir}) is not a writable directory:"
                f" {error.strerror or error}",
                file=sys.stderr,
            )
            return CONFIG_EXIT
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        log.info(
            "starting workers",
            extra=fields(workers=self.count, port=self.settings.GATEWAY_PORT),
        )
        try:
            for index in range(self.count):
                self.workers[index] = self._start(index)
            code = self._watch()
        finally:
            self._stop_all()
            if self.own_metrics_dir:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)
        log.info("workers stopped", extra=fields(exit_code=code))
        return code

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def _start(self, index: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, WORKER_ENV: str(index), MULTIPROC_ENV: str(self.metrics_dir)}
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway"], env=env, start_new_session=True
        )
        log.info("worker started", extra=fields(worker=index, pid=process.pid))
        return process

    def _watch(self) -> int:
        """Until a signal: restart dead workers; the exit code when giving up, else 0."""
        while not self.stopping:
            for index, process in list(self.workers.items()):
                code = process.poll()
                if code is None:
                    continue
                self._forget(process.pid)
                if code == CONFIG_EXIT:
                    log.error("worker refused its settings", extra=fields(worker=index))
                    return CONFIG_EXIT
                now = time.monotonic()
                self.deaths.append(now)
                while self.deaths and self.deaths[0] < now - RESTART_WINDOW_SECONDS:
                    self.deaths.popleft()
                if len(self.deaths) > RESTART_LIMIT:
                    log.error(
                        "workers keep dying; stopping",
                        extra=fields(deaths=len(self.deaths), window=RESTART_WINDOW_SECONDS),
                    )
                    return 1
                log.error(
                    "worker died; restarting it",
                    extra=fields(worker=index, pid=process.pid, exit_code=code),
                )
                self.workers[index] = self._start(index)
            time.sleep(POLL_SECONDS)
        return 0

    def _stop_all(self) -> None:
        for process in self.workers.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.SHUTDOWN_GRACE_SECONDS + 5.0
        for index, process in self.workers.items():
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.error("worker did not stop in time; killed", extra=fields(worker=index))
                process.kill()
                process.wait()
            self._forget(process.pid)

    def _reset_metrics(self) -> None:
        # Stale files from an earlier run would be summed in (prometheus_client's rule: wipe the
        # directory between runs).
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.metrics_dir.glob("*.db"):
            stale.unlink(missing_ok=True)

    def _forget(self, pid: int) -> None:
        # Counters and histograms of a dead worker stay summed; only live gauges are dropped.
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
