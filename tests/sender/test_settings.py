"""The sender's settings: required variables, sandbox defaults, rate limits and overrides."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sender.settings import DEFAULT_RETRY_TIERS_MS, Settings
from shared.settings import SANDBOX_DEFAULTS, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("META_", "SENDER_", "MENSAJERO_")):
            monkeypatch.delenv(name)


def test_missing_token_is_named() -> None:
    with pytest.raises(SettingsError, match="META_WA_ACCESS_TOKEN es requerido"):
        load_settings(Settings, META_WA_PHONE_NUMBER_ID="1")


def test_process_exits_2_without_token() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("META_", "MENSAJERO_"))}
    result = subprocess.run(
        [sys.executable, "-m", "sender"], cwd=ROOT, env=env, capture_output=True, timeout=30
    )
    assert result.returncode == 2
    assert b"META_WA_ACCESS_TOKEN es requerido" in result.stderr


def test_defaults() -> None:
    s = load_settings(Settings, META_WA_ACCESS_TOKEN="t", META_WA_PHONE_NUMBER_ID="1")
    assert s.META_GRAPH_URL == "https://graph.facebook.com"
    assert s.graph_base == "https://graph.facebook.com/v25.0"  # issue 12: a current version
    assert s.SENDER_PORT == 9101
    assert s.SENDER_RATE_PER_SECOND == 80
    assert s.SENDER_VALIDITY_SECONDS == 4 * 3600
    assert s.SENDER_RETRY_TIERS_MS == DEFAULT_RETRY_TIERS_MS
    assert s.db_schema == "sender"


def test_sandbox_fills_token_number_and_graph_url() -> None:
    s = load_settings(Settings, MENSAJERO_ENV="sandbox")
    assert SANDBOX_DEFAULTS["META_WA_ACCESS_TOKEN"] == s.META_WA_ACCESS_TOKEN
    assert SANDBOX_DEFAULTS["META_WA_PHONE_NUMBER_ID"] == s.META_WA_PHONE_NUMBER_ID
    assert SANDBOX_DEFAULTS["META_GRAPH_URL"] == s.META_GRAPH_URL


def test_rate_is_capped_at_1000() -> None:
    with pytest.raises(SettingsError, match="SENDER_RATE_PER_SECOND"):
        load_settings(Settings, MENSAJERO_ENV="sandbox", SENDER_RATE_PER_SECOND=1001)


def test_per_number_rates_and_tiers_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MENSAJERO_ENV", "sandbox")
    monkeypatch.setenv("SENDER_RATE_OVERRIDES", "100000000000001=1000, 200=20")
    monkeypatch.setenv("SENDER_RETRY_TIERS_MS", "400,100,200")
    s = Settings()
    assert s.rate_for("100000000000001") == 1000
    assert s.rate_for("200") == 20
    assert s.rate_for("other") == 80
    assert s.SENDER_RETRY_TIERS_MS == (100, 200, 400)


def test_bad_override_is_explained() -> None:
    with pytest.raises(SettingsError, match="SENDER_RATE_OVERRIDES"):
        load_settings(Settings, MENSAJERO_ENV="sandbox", SENDER_RATE_OVERRIDES="1=5000")
