"""Settings: a missing variable is named, in the runbook's words; sandbox fills defaults."""

from __future__ import annotations

import subprocess
import sys
from typing import ClassVar

import pytest

from shared.settings import ServiceSettings, SettingsError, load_settings


class NeedsToken(ServiceSettings):
    service_name: ClassVar[str] = "example"
    META_WA_ACCESS_TOKEN: str
    PORT: int = 1


def test_missing_required_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("META_WA_ACCESS_TOKEN", raising=False)
    monkeypatch.delenv("MENSAJERO_ENV", raising=False)
    with pytest.raises(SettingsError) as error:
        load_settings(NeedsToken)
    assert str(error.value) == "META_WA_ACCESS_TOKEN es requerido"


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("META_WA_ACCESS_TOKEN", "x")
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(SettingsError, match=r"^PORT is invalid"):
        load_settings(NeedsToken)


def test_sandbox_profile_fills_defaults_but_environment_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MENSAJERO_ENV", "sandbox")
    monkeypatch.delenv("META_WA_ACCESS_TOKEN", raising=False)
    assert load_settings(NeedsToken).META_WA_ACCESS_TOKEN == "sandbox-token"
    monkeypatch.setenv("META_WA_ACCESS_TOKEN", "mine")
    assert load_settings(NeedsToken).META_WA_ACCESS_TOKEN == "mine"


def test_entry_point_exits_2_with_one_line(tmp_path) -> None:
    script = (
        "from typing import ClassVar\n"
        "from shared.settings import ServiceSettings, load_or_exit\n"
        "class S(ServiceSettings):\n"
        "    META_WA_ACCESS_TOKEN: str\n"
        "load_or_exit(S)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": "."}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "META_WA_ACCESS_TOKEN es requerido"
