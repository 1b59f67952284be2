"""The gateway against the receiver a user would pick instead: pywa 4.5's async receiver.

Both answer signed single-message webhooks from ``wrk -t1 -c32`` (Debian's ``wrk``), one after
the other, ``BENCH_ROUNDS`` times (3), each for ``BENCH_SECONDS`` (10) after a warm-up, at one
process and at one process per core. The gateway is durable: it answers 200 only once the broker
confirmed the event into a quorum queue bound to every event. pywa (with FastAPI, uvicorn,
uvloop and httptools, in a venv of its own under ``BENCH_WORK_DIR``, ``.bench`` by default,
never the project's dependencies) checks the signature, parses the update, calls a handler that
does nothing and answers 200 without storing anything (``bench/pywa_receiver.py``).

For each side: throughput, p50 and p99 latency, CPU per request read from ``/proc`` (the
server's processes only), the broker's CPU per request, the share of the machine's CPU time the
hypervisor stole meanwhile (``/proc/stat``: a virtual machine's neighbours; a round with a high
one is a noisy round, and it hurts the gateway, whose answer waits on a second process, more than
pywa), and for the gateway the peak RSS per worker and a 1,000-update batch answered. Then the
two ratios: throughput (gateway / pywa) and CPU efficiency (pywa's CPU per request / the
gateway's: above 1, the gateway is the cheaper one).

Where the gateway's cost goes: at one process, the same gateway with a publisher that stores
nothing (``bench/storeless_gateway.py``) runs beside them, and the bench prints its CPU
efficiency against pywa and what confirmed publishing adds per webhook (the difference).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aio_pika

from bench.gateway_bench import (
    SECRET,
    _batch_load,
    _broker_pid,
    _children,
    _cpu_seconds,
    _free_port,
    _http_get_status,
    _start_gateway,
    _stop_gateway,
    _tree_cpu,
    gateway_sink,
)

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("BENCH_WORK_DIR", ROOT / ".bench"))
SECONDS = int(float(os.environ.get("BENCH_SECONDS", "10")))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WARMUP_SECONDS = 2
CONNECTIONS = 32
CORES = os.cpu_count() or 1
PYWA = ("pywa==4.5.0", "fastapi", "uvicorn", "uvloop", "httptools")
BODIES = 4000  # distinct webhooks (distinct wamids), cycled


@dataclass
class Figures:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # per request
    errors: float
    rss_mb: float = 0.0  # peak per process
    broker_us: float = 0.0  # the broker's CPU per request (none when nothing is stored)
    steal_pct: float = 0.0  # of the machine's CPU time, taken by the hypervisor meanwhile


def _machine_ticks() -> tuple[int, int]:
    """All CPU time and the part stolen by the hypervisor (``/proc/stat``), in ticks."""
    with contextlib.suppress(OSError), open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]  # user .. steal
        return sum(values), values[7]
    return 0, 0


# --------------------------------------------------------------------------- set-up


def pywa_python() -> Path:
    """The venv with pywa, created (and filled) the first time."""
    venv = WORK / "pywa-venv"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import pywa, fastapi, uvicorn, uvloop, httptools"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"installing {' '.join(PYWA)} into {venv} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PYWA], check=True)
    return python


def single_message(n: int) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [
            {
                "profile": {"name": "Usuario"},
                "wa_id": "5491135722871",
                "user_id": "AR.13491208655302741918",
            }
        ],
        "messages": [
            {
                "from": "5491135722871",
                "from_user_id": "AR.13491208655302741918",
                "id": f"wamid.receivers.{n}",
                "timestamp": "1750091045",
                "type": "text",
                "text": {"body": f"Hola {n}"},
            }
        ],
    }
    envelope = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "419561257915477", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(envelope, ensure_ascii=True).encode()


def wrk_script() -> Path:
    """A Lua script for wrk that cycles through signed, distinct webhooks."""
    lines = ["local requests = {}"]
    for n in range(BODIES):
        body = single_message(n)
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = (
            '{["Host"] = "127.0.0.1", ["Content-Type"] = "application/json", '
            f'["X-Hub-Signature-256"] = "sha256={signature}"}}'
        )
        lines.append(
            f'requests[{n + 1}] = wrk.format("POST", "/webhook/whatsapp", {headers}, '
            f"[==[{body.decode()}]==])"
        )
    lines += [
        "local i = 0",
        "function request()",
        "  i = i % #requests + 1",
        "  return requests[i]",
        "end",
    ]
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "single-message.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- measuring


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")


def parse_wrk(output: str) -> tuple[float, float, float, float, float]:
    """requests, requests/s, p50 ms, p99 ms, non-2xx answers from wrk's --latency output."""
    requests = float(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    failed = re.search(r"Socket errors: .*?timeout (\d+)", output)
    bad = (float(errors.group(1)) if errors else 0.0) + (float(failed.group(1)) if failed else 0.0)
    return requests, rps, p50, p99, bad


def _rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _wrk(port: int, script: Path, seconds: int) -> str:
    process = await asyncio.create_subprocess_exec(
        "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script),
        f"http://127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    return out.decode()


async def measure(pid: int, port: int, script: Path) -> Figures:
    await _wrk(port, script, WARMUP_SECONDS)
    workers = _children(pid) or [pid]
    peak: dict[int, float] = {}
    broker = _broker_pid()
    broker_before = _cpu_seconds(broker) if broker else 0.0
    ticks_before, stolen_before = _machine_ticks()
    cpu_before = _tree_cpu(pid)
    load = asyncio.create_task(_wrk(port, script, SECONDS))
    while not load.done():
        for worker in workers:
            peak[worker] = max(peak.get(worker, 0.0), _rss_mb(worker))
        await asyncio.sleep(0.5)
    cpu = _tree_cpu(pid) - cpu_before
    broker_cpu = _cpu_seconds(broker) - broker_before if broker else 0.0
    ticks_after, stolen_after = _machine_ticks()
    ticks, stolen = ticks_after - ticks_before, stolen_after - stolen_before
    requests, rps, p50, p99, errors = parse_wrk(load.result())
    rss = max(peak.values(), default=0.0)
    per_request = 1e6 / max(requests, 1.0)
    return Figures(
        rps, p50, p99, cpu * per_request, errors, rss, broker_cpu * per_request,
        100.0 * stolen / max(ticks, 1),
    )  # fmt: skip


async def _start_pywa(python: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, before any load
        [str(python), str(ROOT / "bench" / "pywa_receiver.py"), str(port), str(workers)],
        env={**os.environ, "BENCH_APP_SECRET": SECRET},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    path = "/webhook/whatsapp?hub.mode=subscribe&hub.verify_token=bench&hub.challenge=1"
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError):
            if await _http_get_status(port, path) == 200 and len(_children(process.pid)) >= (
                workers if workers > 1 else 0
            ):
                return process
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"pywa receiver did not start: {process.stderr!r}")
        await asyncio.sleep(0.2)


# --------------------------------------------------------------------------- the run


async def _one_round(
    env: dict[str, str], python: Path, script: Path, sink: aio_pika.abc.AbstractQueue
) -> dict[str, Figures | float]:
    found: dict[str, Figures | float] = {}
    for workers in sorted({1, CORES}):
        label = "1" if workers == 1 else "per_core"
        await sink.purge()
        port = _free_port()
        gateway = await _start_gateway({**env, "GATEWAY_PORT": str(port)}, port, workers)
        try:
            found[f"gateway_{label}"] = await measure(gateway.pid, port, script)
            if workers == 1:
                batch = await _batch_load(port)
                found["batch_1000_ms"] = batch["batch_1000_median_ms"]
        finally:
            await _stop_gateway(gateway)
        if workers == 1:  # where the gateway's cost goes: its own path, and the broker's part
            port = _free_port()
            storeless = await _start_gateway(
                {**env, "GATEWAY_PORT": str(port)}, port, 1, "bench.storeless_gateway"
            )
            try:
                found["storeless_1"] = await measure(storeless.pid, port, script)
            finally:
                await _stop_gateway(storeless)
        port = _free_port()
        pywa = await _start_pywa(python, port, workers)
        try:
            found[f"pywa_{label}"] = await measure(pywa.pid, port, script)
        finally:
            await _stop_gateway(pywa)
    return found


def _print_round(index: int, found: dict[str, Figures | float]) -> None:
    print(f"  round {index}", flush=True)
    for name, figures in found.items():
        if isinstance(figures, Figures):
            rss = f" rss {figures.rss_mb:5.1f} MB" if name.startswith("gateway") else ""
            print(
                f"    {name:<18} {figures.rps:8.0f}/s  p50 {figures.p50_ms:6.2f} ms"
                f"  p99 {figures.p99_ms:6.2f} ms  cpu {figures.cpu_us:6.1f} us/req"
                f"  broker {figures.broker_us:5.1f} us/req  steal {figures.steal_pct:4.1f}%"
                f"  errors {figures.errors:.0f}{rss}"
            )
    for label in ("1", "per_core"):
        gateway, pywa = found.get(f"gateway_{label}"), found.get(f"pywa_{label}")
        if (
            isinstance(gateway, Figures)
            and isinstance(pywa, Figures)
            and pywa.rps
            and gateway.cpu_us
        ):
            print(
                f"    ratios ({label:>8} process): throughput {gateway.rps / pywa.rps:.2f},"
                f" CPU efficiency {pywa.cpu_us / gateway.cpu_us:.2f}"
            )
    trio = _storeless_trio(found)
    if trio is not None:
        storeless, gateway, pywa = trio
        print(
            f"    the gateway storing nothing: CPU efficiency {pywa.cpu_us / storeless.cpu_us:.2f}"
            f" of pywa's; confirmed publishing adds {gateway.cpu_us - storeless.cpu_us:.0f} us/req"
        )
    print(f"    batch of 1,000 updates answered in {found['batch_1000_ms']:.1f} ms", flush=True)


async def run() -> dict[str, float]:
    if shutil.which("wrk") is None:
        raise SystemExit("the receivers bench needs wrk: apt-get install wrk (Debian's package)")
    python = pywa_python()
    script = wrk_script()
    print(f"  {CORES} cores; wrk -t1 -c{CONNECTIONS}, {SECONDS} s per side, {ROUNDS} rounds")
    rounds: list[dict[str, Figures | float]] = []
    async with gateway_sink() as sink:
        for index in range(1, ROUNDS + 1):
            rounds.append(await _one_round(sink.env, python, script, sink.queue))
            _print_round(index, rounds[-1])
    return _summary(rounds)


def _storeless_trio(found: dict[str, Figures | float]) -> tuple[Figures, Figures, Figures] | None:
    """A round's storeless gateway, gateway and pywa, at one process (None: one is missing)."""
    storeless, gateway, pywa = (found.get(k) for k in ("storeless_1", "gateway_1", "pywa_1"))
    if (
        isinstance(storeless, Figures)
        and isinstance(gateway, Figures)
        and isinstance(pywa, Figures)
    ):
        return storeless, gateway, pywa
    return None


def _summary(rounds: list[dict[str, Figures | float]]) -> dict[str, float]:
    """Medians over the rounds (each round is printed above)."""
    out: dict[str, float] = {}
    for label in ("1", "per_core"):
        gateways = [r[f"gateway_{label}"] for r in rounds]
        pywas = [r[f"pywa_{label}"] for r in rounds]
        pairs = [(g, p) for g, p in zip(gateways, pywas, strict=True)]
        pairs_ok = [(g, p) for g, p in pairs if isinstance(g, Figures) and isinstance(p, Figures)]
        for side, index in (("gateway", 0), ("pywa", 1)):
            figures = [pair[index] for pair in pairs_ok]
            out[f"{side}_{label}_rps"] = statistics.median(f.rps for f in figures)
            out[f"{side}_{label}_p99_ms"] = statistics.median(f.p99_ms for f in figures)
            out[f"{side}_{label}_cpu_us"] = statistics.median(f.cpu_us for f in figures)
        out[f"throughput_ratio_{label}"] = statistics.median(g.rps / p.rps for g, p in pairs_ok)
        out[f"cpu_efficiency_ratio_{label}"] = statistics.median(
            p.cpu_us / g.cpu_us for g, p in pairs_ok
        )
    trios = [t for t in map(_storeless_trio, rounds) if t is not None]
    out["storeless_1_cpu_us"] = statistics.median(s.cpu_us for s, _, _ in trios)
    out["storeless_cpu_efficiency_ratio_1"] = statistics.median(
        p.cpu_us / s.cpu_us for s, _, p in trios
    )
    out["confirmed_publishing_cpu_us"] = statistics.median(g.cpu_us - s.cpu_us for s, g, _ in trios)
    gateway_rss = [r["gateway_per_core"] for r in rounds]
    out["gateway_peak_rss_mb_per_worker"] = max(
        g.rss_mb for g in gateway_rss if isinstance(g, Figures)
    )
    out["batch_1000_ms_worst"] = max(float(r["batch_1000_ms"]) for r in rounds)  # type: ignore[arg-type]
    return out


if __name__ == "__main__":
    print(asyncio.run(run()))
