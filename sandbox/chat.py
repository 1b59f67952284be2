"""Chat from a terminal as a customer: type to write to the business, see what it answers.

The customer is a phone, or a phone-less username adopter known by a business-scoped user id.
`!emit <field> {json}` asks the sandbox for any other webhook about this customer (see
`POST /_sandbox/webhooks/emit`), e.g. `!emit user_preferences {"value": "stop"}`.
`render_message`, `parse_line` and `parse_emit` are pure (and unit tested); `ChatSession` does
the I/O.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

POLL_WAIT_SECONDS = 25
EMIT_PREFIX = "!emit"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is chatting: a phone, a business-scoped user id (phone-less), or both."""

    name: str = "Usuario"
    phone: str | None = None
    user_id: str | None = None
    username: str | None = None
    parent_user_id: str | None = None

    @property
    def address(self) -> str:
        """How the sandbox names this customer in paths and emits."""
        address = self.phone or self.user_id
        if address is None:
            raise ValueError("a chat needs a phone or a business-scoped user id")
        return address

    def fields(self) -> dict[str, Any]:
        """The identity part of a `POST /_sandbox/inbound` body."""
        found: dict[str, Any] = {}
        if self.phone:
            found["from"] = self.phone
        for key in ("user_id", "username", "parent_user_id"):
            if getattr(self, key):
                found[key] = getattr(self, key)
        found["name"] = self.name
        return found

    def describe(self) -> str:
        shown = self.phone or f"{self.username or self.user_id}, without a phone,"
        return f"{shown} ({self.name})"


@dataclass(frozen=True, slots=True)
class Choice:
    """A button or list row the person can pick by typing its number."""

    number: int
    kind: str  # "button_reply" | "list_reply" | "button" (template quick reply)
    id: str
    title: str
    context_id: str
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    text: str
    choices: tuple[Choice, ...] = ()


def _media_line(kind: str, media: Mapping[str, Any]) -> str:
    label = kind
    if kind == "document" and media.get("filename"):
        label = f"document: {media['filename']}"
    parts = [f"[{label}]"]
    if media.get("caption"):
        parts.append(str(media["caption"]))
    parts.append(f"<{media.get('link') or 'media ' + str(media.get('id', '?'))}>")
    return " ".join(parts)


def _interactive(record: Mapping[str, Any], interactive: Mapping[str, Any]) -> Rendered:
    wamid = str(record.get("wamid", ""))
    kind = interactive.get("type")
    lines: list[str] = []
    header = interactive.get("header") or {}
    if header.get("type") == "text":
        lines.append(f"*{header.get('text', '')}*")
    elif header:
        lines.append(_media_line(str(header.get("type")), header.get(header.get("type"), {})))
    if interactive.get("body"):
        lines.append(str(interactive["body"].get("text", "")))
    if interactive.get("footer"):
        lines.append(f"_{interactive['footer'].get('text', '')}_")
    action = interactive.get("action") or {}
    choices: list[Choice] = []
    if kind == "button":
        for button in action.get("buttons", []):
            reply = button.get("reply", {})
            choice = Choice(len(choices) + 1, "button_reply", reply["id"], reply["title"], wamid)
            choices.append(choice)
            lines.append(f"  {choice.number}) {choice.title}")
    elif kind == "list":
        lines.append(f"  [{action.get('button', 'Menu')}]")
        for section in action.get("sections", []):
            if section.get("title"):
                lines.append(f"  {section['title']}")
            for row in section.get("rows", []):
                choice = Choice(
                    len(choices) + 1,
                    "list_reply",
                    row["id"],
                    row["title"],
                    wamid,
                    row.get("description"),
                )
                choices.append(choice)
                extra = f" - {choice.description}" if choice.description else ""
                lines.append(f"    {choice.number}) {choice.title}{extra}")
    elif kind == "cta_url":
        params = action.get("parameters", {})
        lines.append(f"  [{params.get('display_text', 'Open')}] {params.get('url', '')}")
    else:
        lines.insert(0, f"[interactive {kind}]")
    return Rendered("\n".join(lines), tuple(choices))


def _template(record: Mapping[str, Any], body: Mapping[str, Any]) -> Rendered:
    preview = record.get("template")
    template = body.get("template", {})
    if not preview:
        name = template.get("name", "?")
        language = template.get("language", {}).get("code", "?")
        return Rendered(f"[template {name} ({language})]")
    lines = [f"[template {preview['name']} ({preview['language']})]"]
    if preview.get("header"):
        lines.append(f"*{preview['header']}*")
    lines.append(str(preview.get("body", "")))
    if preview.get("footer"):
        lines.append(f"_{preview['footer']}_")
    choices: list[Choice] = []
    for button in preview.get("buttons", []):
        if button.get("type") == "quick_reply":
            choice = Choice(
                len(choices) + 1,
                "button",
                str(button.get("payload") or button["text"]),
                str(button["text"]),
                str(record.get("wamid", "")),
            )
            choices.append(choice)
            lines.append(f"  {choice.number}) {choice.title}")
        else:
            lines.append(f"  [{button.get('text', '')}]")
    return Rendered("\n".join(lines), tuple(choices))


def render_message(record: Mapping[str, Any]) -> Rendered:
    """A message a phone received (as `/_sandbox/phones/{n}/messages` lists it), for a terminal."""
    body: Mapping[str, Any] = record.get("body") or {}
    kind = str(record.get("type") or body.get("type") or "text")
    content: Any = body.get(kind) or {}
    if kind == "text":
        rendered = Rendered(str(content.get("body", "")))
    elif kind in ("image", "video", "audio", "document", "sticker"):
        rendered = Rendered(_media_line(kind, content))
    elif kind == "interactive":
        rendered = _interactive(record, content)
    elif kind == "template":
        rendered = _template(record, body)
    elif kind == "location":
        where = ", ".join(str(content[k]) for k in ("name", "address") if content.get(k))
        position = f"({content.get('latitude')}, {content.get('longitude')})"
        rendered = Rendered(f"[location] {where} {position}".replace("  ", " "))
    elif kind == "contacts":
        people = []
        for contact in body.get("contacts", []):
            phones = ", ".join(p.get("phone", "") for p in contact.get("phones", []))
            name = contact.get("name", {}).get("formatted_name", "?")
            people.append(f"{name} {phones}".strip())
        rendered = Rendered("[contact] " + "; ".join(people))
    elif kind == "reaction":
        rendered = Rendered(f"[reaction {content.get('emoji') or '(removed)'}]")
    else:
        rendered = Rendered(f"[{kind}]")
    context_id = record.get("context_id")
    if context_id:
        return Rendered(f"(reply to {context_id})\n{rendered.text}", rendered.choices)
    return rendered


def parse_line(line: str, choices: Sequence[Choice], who: Identity) -> dict[str, Any] | None:
    """The `/_sandbox/inbound` body for a typed line: a picked choice, or text (None if blank)."""
    text = line.strip()
    if not text:
        return None
    request: dict[str, Any] = who.fields()
    if text.isdigit() and 1 <= int(text) <= len(choices):
        choice = choices[int(text) - 1]
        request["context_id"] = choice.context_id
        if choice.kind == "button":
            request["button"] = {"payload": choice.id, "text": choice.title}
        else:
            reply: dict[str, Any] = {"id": choice.id, "title": choice.title}
            if choice.description:
                reply["description"] = choice.description
            request[choice.kind] = reply
        return request
    request["text"] = text
    return request


def parse_emit(line: str, who: Identity) -> dict[str, Any]:
    """The `/_sandbox/webhooks/emit` body for `!emit <field> [json options]`."""
    rest = line.strip()[len(EMIT_PREFIX) :].strip()
    field, _, options = rest.partition(" ")
    if not field:
        raise ValueError('usage: !emit <field> [{"option": "value"}]')
    extra = json.loads(options) if options.strip() else {}
    if not isinstance(extra, dict):
        raise ValueError("the options must be a JSON object")
    return {"field": field, "customer": who.address, **extra}


def format_received(record: Mapping[str, Any], rendered: Rendered) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(float(record.get("time", time.time()))))
    indented = "\n".join("  " + line for line in rendered.text.splitlines() or [""])
    sender = "business (WhatsApp Business app)" if record.get("source") else "business"
    return f"[{stamp}] {sender}:\n{indented}"


class ChatSession:
    """One customer talking to the business through a running sandbox."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        sandbox_url: str,
        who: Identity,
        output: Callable[[str], None] = print,
    ) -> None:
        self._session = session
        self._base = sandbox_url.rstrip("/")
        self.who = who
        self._output = output
        self.choices: tuple[Choice, ...] = ()
        self._last_index = -1

    async def poll(self, wait: float = POLL_WAIT_SECONDS) -> int:
        """Print what arrived since the last poll; return how many messages arrived."""
        url = f"{self._base}/_sandbox/phones/{quote(self.who.address, safe='')}/messages"
        params = {"after": str(self._last_index), "wait": str(wait)}
        async with self._session.get(url, params=params) as response:
            response.raise_for_status()
            data = await response.json()
        for record in data["messages"]:
            rendered = render_message(record)
            if rendered.choices:
                self.choices = rendered.choices
            self._output(format_received(record, rendered))
            self._last_index = int(record["index"])
        return len(data["messages"])

    async def follow(self) -> None:
        """Poll for ever, surviving a sandbox that is restarting."""
        while True:
            try:
                await self.poll()
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._output(f"! cannot read messages from the sandbox: {exc}")
                await asyncio.sleep(2)

    async def say(self, line: str) -> None:
        if line.strip().startswith(EMIT_PREFIX):
            await self.emit(line)
            return
        request = parse_line(line, self.choices, self.who)
        if request is None:
            return
        answer = await self._post("/_sandbox/inbound", request)
        if answer is not None and answer.get("gateway_status") != 200:
            detail = answer.get("error") or answer.get("gateway_status")
            self._output(f"! the business did not take the webhook ({detail}); Meta would retry")

    async def emit(self, line: str) -> None:
        """`!emit <field> {json}`: a webhook about this customer, signed and posted."""
        try:
            request = parse_emit(line, self.who)
        except ValueError as exc:
            self._output(f"! {exc}")
            return
        answer = await self._post("/_sandbox/webhooks/emit", request)
        if answer is not None:
            self._output(
                f"! sent {answer['field']} (the business answered {answer['gateway_status']})"
            )

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The sandbox's answer, or None after saying what went wrong."""
        try:
            async with self._session.post(self._base + path, json=body) as response:
                answer: dict[str, Any] = await response.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._output(f"! cannot reach the sandbox: {exc}")
            return None
        if response.status != 200:
            self._output(f"! the sandbox refused it: {answer.get('error', answer)}")
            return None
        return answer

    async def run(self, lines: AsyncIterator[str]) -> None:
        follower = asyncio.create_task(self.follow())
        try:
            async for line in lines:
                await self.say(line)
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)


async def stdin_lines() -> AsyncIterator[str]:
    """Lines typed on stdin until end of input, read by a daemon thread so Ctrl-C never hangs."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, name="chat-stdin", daemon=True).start()
    while (line := await queue.get()) is not None:
        yield line


async def chat(sandbox_url: str, who: Identity) -> None:
    print(
        f"Chatting as {who.describe()} through {sandbox_url}.\n"
        "Type a message and press Enter; type a number to pick a button or list row; "
        f'{EMIT_PREFIX} <field> {{"option": ...}} sends another webhook; Ctrl-D to quit.'
    )
    timeout = aiohttp.ClientTimeout(total=POLL_WAIT_SECONDS + 10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await ChatSession(session, sandbox_url, who).run(stdin_lines())
