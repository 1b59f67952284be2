"""Settings from the environment, templates files, and the token buckets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from sandbox.config import SandboxConfig
from sandbox.limits import PairLimiter, TokenBucket
from sandbox.templates import load_templates
from tests.sandbox.support import DATA


def test_defaults() -> None:
    config = SandboxConfig()
    assert config.access_token == "sandbox-token"
    assert config.app_secret == "sandbox-app-secret"
    assert config.phone_number_id == "100000000000001"
    assert config.display_phone_number == "+15550000001"
    assert config.display_digits == "15550000001"
    assert config.waba_id == "200000000000001"
    assert (config.host, config.port) == ("127.0.0.1", 8090)
    assert config.webhook_url == "http://127.0.0.1:8080/webhook/whatsapp"
    assert config.rate_per_second == 80
    assert (config.pair_burst, config.pair_interval_seconds) == (45, 6)
    assert config.status_delays_ms == (50, 150, 300)
    assert config.status_delays == (0.05, 0.15, 0.3)
    assert config.enforce_window is True
    assert config.templates is None


def test_every_variable_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    templates = tmp_path / "t.yaml"
    templates.write_text("templates: []\n")
    environment = {
        "META_WA_ACCESS_TOKEN": "tok",
        "META_WA_APP_SECRET": "sec",
        "META_WA_PHONE_NUMBER_ID": "42",
        "SANDBOX_DISPLAY_PHONE_NUMBER": "+5491100000000",
        "SANDBOX_WABA_ID": "43",
        "SANDBOX_HOST": "0.0.0.0",
        "SANDBOX_PORT": "9999",
        "SANDBOX_WEBHOOK_URL": "http://gateway:8080/webhook/whatsapp",
        "SANDBOX_RATE_PER_SECOND": "1000",
        "SANDBOX_PAIR_BURST": "3",
        "SANDBOX_PAIR_INTERVAL_SECONDS": "0.5",
        "SANDBOX_STATUS_DELAYS_MS": "1, 2,3",
        "SANDBOX_ENFORCE_WINDOW": "false",
        "SANDBOX_TEMPLATES": str(templates),
        "SANDBOX_SEED": "99",
        "SANDBOX_WEBHOOK_MAX_ATTEMPTS": "4",
        "LOG_LEVEL": "DEBUG",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    config = SandboxConfig()
    assert config.access_token == "tok"
    assert config.app_secret == "sec"
    assert config.phone_number_id == "42"
    assert config.display_phone_number == "+5491100000000"
    assert config.waba_id == "43"
    assert (config.host, config.port) == ("0.0.0.0", 9999)
    assert config.webhook_url == "http://gateway:8080/webhook/whatsapp"
    assert config.rate_per_second == 1000
    assert (config.pair_burst, config.pair_interval_seconds) == (3, 0.5)
    assert config.status_delays_ms == (1, 2, 3)
    assert config.enforce_window is False
    assert config.templates == str(templates)
    assert config.seed == 99
    assert config.webhook_max_attempts == 4
    assert config.log_level == "DEBUG"


def test_only_the_documented_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unrelated ACCESS_TOKEN (or app_secret, port...) in the environment changes nothing."""
    for name in ("ACCESS_TOKEN", "APP_SECRET", "PHONE_NUMBER_ID", "DISPLAY_PHONE_NUMBER"):
        monkeypatch.setenv(name, "unrelated")
        monkeypatch.setenv(name.lower(), "unrelated")
    for name in ("PORT", "HOST", "SEED", "WEBHOOK_URL", "TEMPLATES", "port"):
        monkeypatch.setenv(name, "7")
    config = SandboxConfig()
    assert (config.access_token, config.app_secret) == ("sandbox-token", "sandbox-app-secret")
    assert config.phone_number_id == "100000000000001"
    assert config.display_phone_number == "+15550000001"
    assert (config.host, config.port) == ("127.0.0.1", 8090)
    assert config.seed != 7  # SEED alone is not SANDBOX_SEED
    assert config.templates is None
    # Code (and the tests) still build a configuration by field name.
    assert SandboxConfig(access_token="t", app_secret="s").access_token == "t"


@pytest.mark.parametrize("delays", ["1,2", "a,b,c", "1,2,-3"])
def test_bad_status_delays(monkeypatch: pytest.MonkeyPatch, delays: str) -> None:
    monkeypatch.setenv("SANDBOX_STATUS_DELAYS_MS", delays)
    with pytest.raises(ValidationError):
        SandboxConfig()


def test_builtin_templates() -> None:
    registry = load_templates(None)
    hello = registry.get("hello_world", "en_US")
    alert = registry.get("handoff_agent_alert", "es_AR")
    reengage = registry.get("reengage_customer", "es_AR")
    assert hello is not None and hello.expected_body_params == 0
    assert alert is not None and alert.expected_body_params == 2
    assert [b.type for b in alert.buttons] == ["quick_reply"]
    assert reengage is not None and reengage.expected_body_params == 1
    assert registry.get("hello_world", "es_AR") is None


def test_templates_from_yaml_and_json(tmp_path: Path) -> None:
    registry = load_templates(str(DATA / "templates.yaml"))
    media = registry.get("template_media", "language-and-locale-code")
    assert media is not None and media.header_params == 1 and media.expected_body_params == 3
    listed = tmp_path / "templates.json"
    listed.write_text(json.dumps([{"name": "promo", "language": "es", "body_params": 4}]))
    promo = load_templates(str(listed)).get("promo", "es")
    assert promo is not None and promo.expected_body_params == 4
    assert promo.render_body(["a"]) == ""


def test_bad_templates_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("templates:\n  - name: x\n")
    with pytest.raises(ValidationError):
        load_templates(str(bad))


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2, capacity=2, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.take(0.5) is True  # one token back after half a second at 2/s
    assert bucket.take(0.5) is False
    assert [bucket.take(10.0) for _ in range(3)] == [True, True, False]  # never above capacity


def test_pair_limiter_burst_then_one_every_interval() -> None:
    pairs = PairLimiter(burst=45, interval=6)
    assert all(pairs.take("+1", 0.0) for _ in range(45))
    assert pairs.take("+1", 0.0) is False
    assert pairs.take("+2", 0.0) is True
    assert pairs.take("+1", 5.9) is False
    assert pairs.take("+1", 6.0) is True


def test_the_2026_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    config = SandboxConfig()
    assert (config.webhook_version, config.webhook_major_version) == ("v25.0", 25)
    assert config.parent_bsuids is False
    assert config.marketing_stop_failure == "sync"
    assert (config.template_review, config.template_review_seconds) == ("approve", 1.0)
    assert config.template_rejection_reason == "INVALID_FORMAT"
    for name, value in {
        "SANDBOX_WEBHOOK_VERSION": "v23.0",
        "SANDBOX_PARENT_BSUIDS": "true",
        "SANDBOX_MARKETING_STOP_FAILURE": "async",
        "SANDBOX_TEMPLATE_REVIEW": "manual",
        "SANDBOX_TEMPLATE_REVIEW_SECONDS": "0",
        "SANDBOX_TEMPLATE_REJECTION_REASON": "PROMOTIONAL",
    }.items():
        monkeypatch.setenv(name, value)
    config = SandboxConfig()
    assert (config.webhook_version, config.webhook_major_version) == ("v23.0", 23)
    assert config.parent_bsuids is True
    assert config.marketing_stop_failure == "async"
    assert (config.template_review, config.template_review_seconds) == ("manual", 0)
    assert config.template_rejection_reason == "PROMOTIONAL"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SANDBOX_WEBHOOK_VERSION", "25"),
        ("SANDBOX_TEMPLATE_REVIEW", "maybe"),
        ("SANDBOX_MARKETING_STOP_FAILURE", "later"),
        ("SANDBOX_TEMPLATE_REVIEW_SECONDS", "-1"),
    ],
)
def test_bad_2026_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("SANDBOX_").lower()):
        SandboxConfig()


def test_each_start_has_a_seed_of_its_own_unless_one_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restarted sandbox must not hand out an earlier run's wamids (the services would drop
    them as Meta's retries); a set seed replays a run."""
    monkeypatch.delenv("SANDBOX_SEED", raising=False)
    # Distinct but for a 1 in 2**31 draw.
    assert SandboxConfig().seed != SandboxConfig().seed
    monkeypatch.setenv("SANDBOX_SEED", "42")
    assert SandboxConfig().seed == SandboxConfig().seed == 42
