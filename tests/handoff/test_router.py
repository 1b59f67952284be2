"""Pure decisions: phrases, agent input, codes, windows, business hours, the menu."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from handoff.options import HandoffOptions
from handoff.router import (
    Addressed,
    Command,
    Plain,
    UnknownCommand,
    clean_code,
    describe_opening,
    encode_code,
    is_open,
    menu_content,
    next_opening,
    normalize,
    one_line,
    parse_agent_input,
    wants_end,
    wants_human,
)
from shared.events import ButtonsContent, ListContent
from shared.profiles import CompanyProfile, Menu, MenuOption
from shared.window import window_open

PHRASES = CompanyProfile().handoff_phrases
TZ = "America/Argentina/Buenos_Aires"
MONDAY_NOON = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 12:00 in Buenos Aires


@pytest.mark.parametrize(
    "text",
    [
        "quiero hablar con un humano",
        "QUIERO HABLAR CON UN HÚMANO!!",
        "¿Me pasás con una PERSONA?",
        "necesito un Asesor",
        "hay agentes?",
        "Quiero hablar con alguien",
        "operador por favor",
    ],
)
def test_handoff_phrases_match_without_case_or_accents(text: str) -> None:
    assert wants_human(text, PHRASES)


@pytest.mark.parametrize("text", ["hola", "personalizado", "quiero info", "", None])
def test_other_text_does_not_trigger(text: str | None) -> None:
    assert not wants_human(text, PHRASES)


def test_profile_phrases_are_configurable() -> None:
    assert wants_human("Necesito SOPORTE técnico", ["soporte tecnico"])
    assert not wants_human("humano", ["soporte"])


def test_end_phrases_are_whole_messages() -> None:
    assert wants_end("Salir", ["salir"])
    assert not wants_end("no quiero salir todavía", ["salir"])
    assert normalize("  ¡Árbol,  ÑANDÚ! ") == "arbol nandu"


@pytest.mark.parametrize(
    ("text", "payload", "expected"),
    [
        ("/tomar k7f", None, Command("tomar", "K7F")),
        ("/TOMAR K7F hola, soy Ana", None, Command("tomar", "K7F", "hola, soy Ana")),
        ("/fin", None, Command("fin")),
        ("/Fin 10a", None, Command("fin", "10A")),
        ("/ayuda", None, Command("ayuda")),
        ("/lista", None, Command("lista")),
        ("/bot k7f", None, Command("bot", "K7F")),
        ("/borrar", None, UnknownCommand("/borrar")),
        ("#k7f hola", None, Addressed("K7F", "hola")),
        ("#K7F: ¿cómo estás?", None, Addressed("K7F", "¿cómo estás?")),
        ("#k7f", None, Addressed("K7F", "")),
        ("hola #k7f", None, Plain("hola #k7f")),
        ("hola", None, Plain("hola")),
        ("Atender", "tomar:k7f", Command("tomar", "K7F")),
        (None, None, Plain("")),
    ],
)
def test_agent_input(text: str | None, payload: str | None, expected: object) -> None:
    assert parse_agent_input(text, payload) == expected


def test_case_codes_are_short_and_forgiving() -> None:
    assert encode_code(1024) == "100"
    assert encode_code(32767) == "ZZZ"
    assert len({encode_code(n) for n in range(1024, 3000)}) == 3000 - 1024
    assert clean_code("#o1l") == "011"
    with pytest.raises(ValueError):
        encode_code(-1)


def test_the_24_hour_window() -> None:
    now = MONDAY_NOON
    assert window_open(now - timedelta(hours=23, minutes=59), now)
    assert not window_open(now - timedelta(hours=24), now)
    assert not window_open(None, now)


def hours(**days: list[str]) -> HandoffOptions:
    return HandoffOptions.model_validate({"business_hours": days})


def test_business_hours_in_the_profile_timezone() -> None:
    opts = hours(mon=["09:00-13:00", "14:00-18:00"], Wednesday=["10:00-12:00"])
    assert is_open(opts.business_hours, TZ, MONDAY_NOON)
    assert not is_open(opts.business_hours, TZ, MONDAY_NOON + timedelta(hours=1, minutes=30))
    evening = MONDAY_NOON + timedelta(hours=8)  # 20:00 local
    assert not is_open(opts.business_hours, TZ, evening)
    opening = next_opening(opts.business_hours, TZ, evening)
    assert opening is not None
    assert describe_opening(opening) == "miércoles 10:00"
    lunch = next_opening(opts.business_hours, TZ, MONDAY_NOON + timedelta(hours=1, minutes=30))
    assert lunch is not None and describe_opening(lunch) == "lunes 14:00"


def test_no_business_hours_means_always_open() -> None:
    assert is_open(None, TZ, MONDAY_NOON)
    assert next_opening(None, TZ, MONDAY_NOON) is None


def test_menu_is_buttons_up_to_three_options_then_a_list() -> None:
    content = menu_content(CompanyProfile())
    assert isinstance(content, ButtonsContent)
    assert [b.title for b in content.buttons][-1] == "Hablar con un humano"
    many = Menu(options=[MenuOption(id=f"o{i}", title=f"Opción {i}") for i in range(5)])
    listed = menu_content(CompanyProfile(menu=many))
    assert isinstance(listed, ListContent)
    assert len(listed.sections[0].rows) == 5


def test_one_line_for_template_parameters() -> None:
    assert one_line("a\n\tb   c", 10) == "a b c"
    assert one_line("x" * 20, 10) == "x" * 9 + "…"
