"""`make run`: the whole of Mensajero on one machine, with no accounts.

Checks that RabbitMQ and PostgreSQL answer, then starts moto's server (local SES), the sandbox
(local Meta) and the four services, each as its own process, with their logs interleaved and
prefixed. Ctrl-C (or SIGTERM) stops them all: SIGTERM first, SIGKILL after a grace period.
Every variable set in the environment overrides the sandbox defaults.

    python deploy/run_local.py            # run everything
    python deploy/run_local.py --check    # only check RabbitMQ and PostgreSQL
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

COLORS = ["\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m", "\033[31m"]
RESET = "\033[0m"


@dataclass
class Service:
    name: str
    argv: list[str]
    health_url: str | None


def sandbox_environment() -> dict[str, str]:
    """The environment for every process: sandbox defaults under whatever the user set."""
    env = dict(os.environ)
    env.setdefault("MENSAJERO_ENV", "sandbox")
    env.setdefault("HTTP_HOST", "127.0.0.1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("GATEWAY_PORT", "8080")
    env.setdefault("SENDER_PORT", "9101")
    env.setdefault("HANDOFF_PORT", "9102")
    env.setdefault("NOTIFIER_PORT", "9103")
    env.setdefault("SANDBOX_PORT", "8090")
    env.setdefault("SES_PORT", "8095")
    env.setdefault("SANDBOX_HOST", "127.0.0.1")
    env.setdefault("SES_ENDPOINT_URL", f"http://127.0.0.1:{env['SES_PORT']}")
    env.setdefault("META_GRAPH_URL", f"http://127.0.0.1:{env['SANDBOX_PORT']}")
    env.setdefault(
        "SANDBOX_WEBHOOK_URL", f"http://127.0.0.1:{env['GATEWAY_PORT']}/webhook/whatsapp"
    )
    env.setdefault("COMPANY_PROFILES_FILE", "deploy/profiles.example.yaml")
    env.setdefault("AWS_REGION", "us-east-1")
    env.setdefault("AWS_ACCESS_KEY_ID", "testing")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    return env


def services(env: dict[str, str]) -> list[Service]:
    py = sys.executable

    def health(port: str) -> str:
        return f"http://127.0.0.1:{env[port]}/healthz"

    return [
        Service(
            "ses",
            [py, "-m", "moto.server", "-H", "127.0.0.1", "-p", env["SES_PORT"]],
            f"http://127.0.0.1:{env['SES_PORT']}/moto-api/",
        ),
        Service(
            "sandbox",
            [py, "-m", "sandbox"],
            f"http://127.0.0.1:{env['SANDBOX_PORT']}/_sandbox/messages",
        ),
        Service("gateway", [py, "-m", "gateway"], health("GATEWAY_PORT")),
        Service("sender", [py, "-m", "sender"], health("SENDER_PORT")),
        Service("handoff", [py, "-m", "handoff"], health("HANDOFF_PORT")),
        Service("notifier", [py, "-m", "notifier"], health("NOTIFIER_PORT")),
    ]


async def check_dependencies(env: dict[str, str]) -> list[str]:
    """One line per dependency that does not answer, naming the URL and how to start it."""
    import aio_pika
    import asyncpg

    problems = []
    rabbit = env.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
    try:
        connection = await asyncio.wait_for(aio_pika.connect(rabbit), 5)
    except Exception as error:
        problems.append(
            f"RabbitMQ does not answer at {rabbit} ({error or type(error).__name__}). "
            "Start it with `rabbitmq-server -detached` (or `docker compose -f "
            "deploy/docker-compose.yml up -d rabbitmq`), or set RABBITMQ_URL."
        )
    else:
        try:
            if not await has_consistent_hash(connection):
                problems.append(
                    f"RabbitMQ at {rabbit} lacks the consistent-hash exchange that handoff's "
                    "partitions need. Enable it (online, no restart): `rabbitmq-plugins enable "
                    "rabbitmq_consistent_hash_exchange`."
                )
        finally:
            await connection.close()
    database = env.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        conn = await asyncpg.connect(database, timeout=5)
        await conn.close()
    except Exception as error:
        problems.append(
            f"PostgreSQL does not answer at {database} ({error or type(error).__name__}). "
            "Start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main "
            "start` (or `docker compose -f deploy/docker-compose.yml up -d postgres`), "
            "or set DATABASE_URL."
        )
    return problems


async def has_consistent_hash(connection: Any) -> bool:
    """Whether the broker knows the ``x-consistent-hash`` exchange type (its plugin is on)."""
    channel = await connection.channel()
    try:
        exchange = await channel.declare_exchange(
            "mensajero.check.consistent-hash", "x-consistent-hash", auto_delete=True
        )
        await exchange.delete()
    except Exception:  # COMMAND_INVALID: unknown exchange type
        return False
    finally:
        with contextlib.suppress(Exception):
            await channel.close()
    return True


async def pipe(name: str, color: str, stream: asyncio.StreamReader, width: int) -> None:
    prefix = f"{color}{name:<{width}}{RESET} | " if sys.stdout.isatty() else f"{name:<{width}} | "
    while line := await stream.readline():
        sys.stdout.write(prefix + line.decode("utf-8", "replace").rstrip("\n") + "\n")
        sys.stdout.flush()


async def wait_healthy(url: str, deadline: float) -> bool:
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as response:
                    if response.status < 500:
                        return True
            await asyncio.sleep(0.2)
    return False


Processes = dict[str, asyncio.subprocess.Process]


async def start_all(
    wanted: list[Service], env: dict[str, str]
) -> tuple[Processes, list[asyncio.Task[None]]]:
    """Every service as a child process, its output prefixed with its name."""
    width = max(len(s.name) for s in wanted)
    processes: Processes = {}
    pipes = []
    for index, service in enumerate(wanted):
        process = await asyncio.create_subprocess_exec(
            *service.argv,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
        )
        processes[service.name] = process
        assert process.stdout is not None
        pipes.append(
            asyncio.create_task(pipe(service.name, COLORS[index % 6], process.stdout, width))
        )
    return processes, pipes


def announce(env: dict[str, str]) -> None:
    ports = {
        name: env[f"{name.upper()}_PORT"] for name in ("gateway", "sender", "handoff", "notifier")
    }
    metrics = "  ".join(f"http://127.0.0.1:{port}/metrics" for port in ports.values())
    print(
        "\nMensajero is up (sandbox mode: no Meta or AWS account needed)\n"
        f"  webhook    http://127.0.0.1:{env['GATEWAY_PORT']}/webhook/whatsapp\n"
        f"  metrics    {metrics}\n"
        f"  sandbox    http://127.0.0.1:{env['SANDBOX_PORT']} (Meta's Graph API, the phones)\n"
        f"  local SES  http://127.0.0.1:{env['SES_PORT']}/moto-api/\n"
        "  chat       .venv/bin/python -m sandbox chat --as +5491135722871\n"
        "Ctrl-C stops everything.\n",
        flush=True,
    )


async def stop_all(
    wanted: list[Service], processes: Processes, exits: list[asyncio.Task[int]]
) -> None:
    """The services before what they depend on (the sandbox and SES last); killed after 15 s."""
    for service in reversed(wanted):
        process = processes[service.name]
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.gather(*exits), 15)
    except TimeoutError:
        for process in processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        await asyncio.gather(*exits)


async def run_all(env: dict[str, str]) -> int:
    problems = await check_dependencies(env)
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        return 1

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    wanted = services(env)
    processes, pipes = await start_all(wanted, env)
    exits = {name: asyncio.create_task(p.wait()) for name, p in processes.items()}
    deadline = time.monotonic() + 60
    health = await asyncio.gather(
        *(wait_healthy(s.health_url, deadline) for s in wanted if s.health_url)
    )
    if all(health):
        announce(env)
    else:
        print("some services did not become healthy; see their logs above", file=sys.stderr)

    first_exit = asyncio.create_task(
        asyncio.wait(exits.values(), return_when=asyncio.FIRST_COMPLETED)
    )
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([first_exit, stopper], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if not stop.is_set():
        for name, task in exits.items():
            if task.done():
                print(
                    f"{name} exited with code {task.result()}; stopping the rest", file=sys.stderr
                )
                code = 1
    await stop_all(wanted, processes, list(exits.values()))
    await asyncio.gather(*pipes, return_exceptions=True)
    stopper.cancel()
    print("all stopped", flush=True)
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check RabbitMQ and PostgreSQL")
    args = parser.parse_args()
    env = sandbox_environment()
    if args.check:
        problems = asyncio.run(check_dependencies(env))
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0
    return asyncio.run(run_all(env))


if __name__ == "__main__":
    raise SystemExit(main())
