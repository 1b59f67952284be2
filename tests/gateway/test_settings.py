"""The gateway's settings: required secrets, defaults, and the process entry point."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gateway.settings import Settings
from shared.settings import SettingsError, load_settings


def test_required_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("META_WA_APP_SECRET", raising=False)
    monkeypatch.delenv("META_WA_VERIFY_TOKEN", raising=False)
    monkeypatch.delenv("MENSAJERO_ENV", raising=False)
    with pytest.raises(SettingsError) as error:
        load_settings(Settings)
    assert "META_WA_APP_SECRET es requerido" in str(error.value)
    assert "META_WA_VERIFY_TOKEN es requerido" in str(error.value)


def test_defaults_and_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MENSAJERO_ENV", "sandbox")
    settings = load_settings(Settings)
    assert settings.META_WA_APP_SECRET == "sandbox-app-secret"
    assert settings.GATEWAY_PORT == 8080
    assert settings.SNS_TRUSTED_CERT_URL_PREFIXES == []
    assert settings.SNS_ALLOWED_TOPIC_ARNS == []
    assert not hasattr(settings, "DATABASE_URL")


def test_process_exits_2_naming_the_missing_variable() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("META_", "MENSAJERO_"))}
    result = subprocess.run(
        [sys.executable, "-m", "gateway"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "META_WA_APP_SECRET es requerido" in result.stderr


def test_bad_certificate_host_pattern_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("META_WA_APP_SECRET", "s")
    monkeypatch.setenv("META_WA_VERIFY_TOKEN", "v")
    monkeypatch.setenv("SNS_CERT_HOST_PATTERN", "sns.(unclosed")
    with pytest.raises(SettingsError, match="SNS_CERT_HOST_PATTERN is invalid"):
        load_settings(Settings)
