"""People at the sandbox's phones, for the system tests: write, send media, read the inbox.

A ``Phone`` is a customer or an agent known by a phone number (E.164) or, for a customer who
hides it behind a username, by the business-scoped user id (BSUID) alone: the sandbox then posts
webhooks without the phone, as Meta does.
"""

from __future__ import annotations

import base64
from typing import Any

from sandbox.people import is_bsuid
from tests.helpers import wait_for
from tests.system.harness import System


def text_of(message: dict[str, Any]) -> str:
    body = message["body"]
    if message["type"] == "text":
        return str(body["text"]["body"])
    if message["type"] == "interactive":
        return str(body["interactive"]["body"]["text"])
    return str(message.get("template") or body)


class Phone:
    def __init__(
        self, system: System, number: str, name: str, *, username: str | None = None
    ) -> None:
        self.system, self.number, self.name, self.username = system, number, name, username

    @property
    def sender(self) -> dict[str, Any]:
        """Who writes, as ``/_sandbox/inbound`` takes it: ``from``, or ``user_id`` (no phone)."""
        if is_bsuid(self.number):
            return {"user_id": self.number, "username": self.username, "name": self.name}
        return {"from": self.number, "name": self.name}

    async def write(self, text: str, **extra: Any) -> None:
        await self._inbound(text=text, **extra)

    async def taps(self, message: dict[str, Any], title: str) -> None:
        """The phone taps the reply button ``title`` of ``message`` (Meta's ``button_reply``)."""
        buttons = message["body"]["interactive"]["action"]["buttons"]
        [reply] = [b["reply"] for b in buttons if b["reply"]["title"] == title]
        await self._inbound(button_reply=reply, context_id=message["wamid"])

    async def _inbound(self, **fields: Any) -> None:
        answer = await self.system.post_json(
            f"{self.system.url('sandbox')}/_sandbox/inbound", {**self.sender, **fields}
        )
        assert answer["gateway_status"] == 200

    async def sends_media(self, kind: str, data: bytes, mime_type: str, **extra: Any) -> str:
        """The phone sends a file; returns the media id Meta gave it (read from the webhook)."""
        media = {"data_base64": base64.b64encode(data).decode(), "mime_type": mime_type, **extra}
        sandbox = self.system.url("sandbox")
        answer = await self.system.post_json(
            f"{sandbox}/_sandbox/inbound", {**self.sender, kind: media}
        )
        assert answer["gateway_status"] == 200
        for delivery in (await self.system.get_json(f"{sandbox}/_sandbox/webhooks"))["webhooks"]:
            for entry in delivery["body"].get("entry", []):
                for change in entry.get("changes", []):
                    for message in change.get("value", {}).get("messages", []):
                        if message["id"] == answer["wamid"]:
                            return str(message[kind]["id"])
        raise AssertionError(f"no webhook for {answer['wamid']}")

    async def inbox(self) -> list[dict[str, Any]]:
        url = f"{self.system.url('sandbox')}/_sandbox/phones/{self.number}/messages"
        messages: list[dict[str, Any]] = (await self.system.get_json(url))["messages"]
        return messages

    async def receives(self, fragment: str, *, after: int = 0) -> dict[str, Any]:
        async def find() -> dict[str, Any] | None:
            return next((m for m in (await self.inbox())[after:] if fragment in text_of(m)), None)

        try:
            found: dict[str, Any] = await wait_for(find, timeout=30)
        except AssertionError:
            got = [text_of(m) for m in await self.inbox()]
            raise AssertionError(f"{self.number} never got {fragment!r}; got {got}") from None
        return found
