"""Pure decisions: no I/O, no clock of their own. Everything here is unit-tested directly."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from handoff.options import WEEKDAYS, Interval
from shared.events import ButtonsContent, ListContent, ListRow, ListSection, ReplyButton
from shared.meta_limits import (
    BUTTON_TITLE_MAX,
    BUTTONS_MAX,
    LIST_BUTTON_MAX,
    ROW_TITLE_MAX,
    ROWS_MAX,
)
from shared.profiles import CompanyProfile, MenuOption

# Crockford's base32 without I, L, O, U: short codes an agent can type on a phone.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CLAIM_PAYLOAD_PREFIX = "tomar:"
# A row of the list that asks an agent which case their message is for (``handoff.drafts``).
CHOICE_PAYLOAD_PREFIX = "caso:"

# ------------------------------------------------------------------ text matching


def normalize(text: str) -> str:
    """Lowercase, without accents or punctuation, single spaces: "¡Quiero un HUMANO!" -> ..."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    words = re.sub(r"[^\w/#]+", " ", bare)
    return " ".join(words.split())


def wants_human(text: str | None, phrases: list[str]) -> bool:
    """True when ``text`` contains a handoff phrase as whole words (plurals too)."""
    if not text:
        return False
    haystack = normalize(text)
    for phrase in phrases:
        needle = normalize(phrase)
        if needle and re.search(rf"(?<!\w){re.escape(needle)}(?:s|es)?(?!\w)", haystack):
            return True
    return False


def wants_end(text: str | None, end_phrases: list[str]) -> bool:
    """True when the whole message is one of the profile's end phrases."""
    if not text:
        return False
    said = normalize(text)
    return any(said == normalize(p) for p in end_phrases if p)


# ------------------------------------------------------------------ case codes


def encode_code(number: int) -> str:
    if number < 0:
        raise ValueError("case numbers are positive")
    out = ""
    while True:
        number, digit = divmod(number, 32)
        out = _ALPHABET[digit] + out
        if number == 0:
            return out


def clean_code(raw: str) -> str:
    """What an agent typed as a code, in canonical form: "#k7f" -> "K7F"; O->0, I/L->1."""
    code = raw.strip().lstrip("#").upper()
    return code.replace("O", "0").replace("I", "1").replace("L", "1")


# ------------------------------------------------------------------ agent input


@dataclass(frozen=True)
class Command:
    name: str  # ayuda, lista, tomar, fin, bot, pasar, pausa, vuelvo, r
    code: str | None = None
    text: str = ""  # what follows a /tomar code (sent to the customer as the first answer)
    raw: str = field(default="", compare=False)  # all after the command's name (/r's reply)


@dataclass(frozen=True)
class UnknownCommand:
    command: str


@dataclass(frozen=True)
class Addressed:
    """``#CODE text``: a message for one case."""

    code: str
    text: str


@dataclass(frozen=True)
class Plain:
    text: str


@dataclass(frozen=True)
class Chosen:
    """A tapped row of the "which case?" list: the agent's kept message goes to ``code``."""

    code: str


AgentInput = Command | UnknownCommand | Addressed | Plain | Chosen

_COMMANDS = {
    "ayuda": "ayuda",
    "help": "ayuda",
    "lista": "lista",
    "casos": "lista",
    "tomar": "tomar",
    "atender": "tomar",
    "fin": "fin",
    "cerrar": "fin",
    "bot": "bot",
    "pasar": "pasar",
    "transferir": "pasar",
    "pausa": "pausa",
    "vuelvo": "vuelvo",
    "r": "r",
    "respuesta": "r",
}
_ADDRESSED = re.compile(r"^\s*#([0-9A-Za-z]{1,12})\b[\s:,.-]*(.*)$", re.DOTALL)


def parse_agent_input(text: str | None, payload: str | None = None) -> AgentInput:
    """What an agent's message asks for. ``payload``: a tapped button's or list row's id."""
    if payload and payload.startswith(CLAIM_PAYLOAD_PREFIX):
        return Command("tomar", clean_code(payload[len(CLAIM_PAYLOAD_PREFIX) :]))
    if payload and payload.startswith(CHOICE_PAYLOAD_PREFIX):
        return Chosen(clean_code(payload[len(CHOICE_PAYLOAD_PREFIX) :]))
    body = (text or "").strip()
    if body.startswith("/"):
        head, _, rest = body[1:].partition(" ")
        name = _COMMANDS.get(normalize(head))
        if name is None:
            return UnknownCommand("/" + head)
        rest = rest.strip()
        code_part, _, after = rest.partition(" ")
        code = clean_code(code_part) if code_part else None
        return Command(name, code, after.strip(), rest)
    match = _ADDRESSED.match(body)
    if match:
        return Addressed(clean_code(match.group(1)), match.group(2).strip())
    return Plain(body)


# ------------------------------------------------------------------ time


def is_open(hours: dict[str, list[Interval]] | None, timezone: str, now: datetime) -> bool:
    """Business hours: None means always open."""
    if hours is None:
        return True
    local = now.astimezone(ZoneInfo(timezone))
    spans = hours.get(WEEKDAYS[local.weekday()], [])
    moment = local.time().replace(tzinfo=None)
    return any(span.start <= moment < span.end for span in spans)


def next_opening(
    hours: dict[str, list[Interval]] | None, timezone: str, now: datetime
) -> datetime | None:
    """When business hours next begin (local time), or None when never/always."""
    if hours is None:
        return None
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        spans = sorted(hours.get(WEEKDAYS[day.weekday()], []), key=lambda s: s.start)
        for span in spans:
            start = datetime.combine(day, span.start, tzinfo=zone)
            if start > local:
                return start
    return None


_DAY_NAMES = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")


def describe_opening(moment: datetime) -> str:
    """ "lunes 09:00": how a customer reads the next opening."""
    return f"{_DAY_NAMES[moment.weekday()]} {moment:%H:%M}"


# ------------------------------------------------------------------ the built-in bot


def menu_content(profile: CompanyProfile) -> ButtonsContent | ListContent:
    """The profile's greeting menu: reply buttons for up to three options, else a list."""
    menu = profile.menu
    options = menu.options
    if len(options) <= BUTTONS_MAX:
        return ButtonsContent(
            body=menu.body,
            buttons=[ReplyButton(id=o.id, title=o.title[:BUTTON_TITLE_MAX]) for o in options],
            footer=menu.footer,
        )
    rows = [
        ListRow(id=o.id, title=o.title[:ROW_TITLE_MAX], description=o.description)
        for o in options[:ROWS_MAX]
    ]
    return ListContent(
        body=menu.body,
        button=menu.list_button[:LIST_BUTTON_MAX],
        sections=[ListSection(rows=rows)],
        header=menu.header,
        footer=menu.footer,
    )


def menu_choice(profile: CompanyProfile, reply_id: str | None) -> MenuOption | None:
    if not reply_id:
        return None
    return next((o for o in profile.menu.options if o.id == reply_id), None)


def one_line(text: str, limit: int) -> str:
    """For template parameters: no newlines or tabs, at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
