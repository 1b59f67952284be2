"""Handoff's settings: agent numbers, the sandbox defaults, a missing variable."""

from __future__ import annotations

import pytest

from handoff.settings import Settings
from shared.settings import SANDBOX_DEFAULTS, SettingsError, load_settings


def test_agent_numbers_are_normalised_and_deduplicated() -> None:
    settings = load_settings(
        Settings, AGENT_WHATSAPP_NUMBER="whatsapp:+54 9 11 0000-0000, 5491100000001,+5491100000000"
    )
    assert settings.agent_numbers == ["+5491100000000", "+5491100000001"]
    assert settings.HANDOFF_PORT == 9102 and settings.BOT_MODE == "menu"
    assert settings.db_schema == "handoff"


def test_a_bad_agent_number_is_named() -> None:
    with pytest.raises(SettingsError, match="AGENT_WHATSAPP_NUMBER"):
        load_settings(Settings, AGENT_WHATSAPP_NUMBER="+54 9 11 nope")


def test_missing_agent_number_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENT_WHATSAPP_NUMBER", raising=False)
    monkeypatch.delenv("MENSAJERO_ENV", raising=False)
    with pytest.raises(SettingsError, match="AGENT_WHATSAPP_NUMBER es requerido"):
        load_settings(Settings)


def test_sandbox_fills_the_agent_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENT_WHATSAPP_NUMBER", raising=False)
    settings = load_settings(Settings, MENSAJERO_ENV="sandbox")
    assert settings.agent_numbers == [SANDBOX_DEFAULTS["AGENT_WHATSAPP_NUMBER"]]


def test_bot_mode_is_checked() -> None:
    with pytest.raises(SettingsError, match="BOT_MODE"):
        load_settings(Settings, AGENT_WHATSAPP_NUMBER="+5491100000000", BOT_MODE="gpt")
