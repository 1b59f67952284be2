"""The templates Mensajero needs, at Meta (the sandbox): `python -m sender templates [sync]`, the
start-up check of the configured ones, and the Graph API version's expiry."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from sender.bootstrap import Adapters
from sender.store import TemplateState
from sender.template_setup import creation_body, problems
from sender.versions import version_warning
from shared.profiles import Profiles, TemplateDefinition, default_templates
from tests.helpers import wait_for
from tests.sender.conftest import NUMBER, TOKEN, Stack

ROOT = Path(__file__).resolve().parents[2]
WABA = "200000000000001"
NEW = {
    "name": "aviso_turno",
    "language": "es_AR",
    "body": "Hola {{1}}, te recordamos tu turno de mañana. Respondé si querés cambiarlo.",
    "body_examples": ["Ana"],
    "buttons": [{"type": "QUICK_REPLY", "text": "Cambiar turno"}],
}


def profiles_file(tmp_path: Path, *extra: dict[str, Any]) -> str:
    """A profiles file naming the default templates (handoff's) and ``extra`` ones."""
    templates = [t.model_dump(exclude_none=True) for t in default_templates()]
    path = tmp_path / "profiles.yaml"
    profile = {"id": "demo", "templates": [*templates, *extra]}
    path.write_text(yaml.safe_dump({"profiles": [profile]}, allow_unicode=True), "utf-8")
    return str(path)


async def command(stack: Stack, *args: str, **env: str) -> tuple[int, str, str]:
    """``python -m sender templates ...`` against the sandbox (asynchronously: the sandbox
    answers from this event loop)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("META_", "MENSAJERO_"))}
    values = {
        "META_WA_ACCESS_TOKEN": TOKEN,
        "META_WA_PHONE_NUMBER_ID": NUMBER,
        "META_GRAPH_URL": stack.sandbox_url,
        "META_WA_BUSINESS_ACCOUNT_ID": WABA,
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sender",
        "templates",
        *args,
        cwd=ROOT,
        env={**base, **{k: v for k, v in values.items() if v}},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def sandbox_templates(stack: Stack) -> dict[str, dict[str, Any]]:
    async with stack.http.get(f"{stack.sandbox_url}/_sandbox/templates") as r:
        found = await r.json()
    items = found["templates"] if isinstance(found, dict) else found
    return {t["name"]: t for t in items}


@pytest.mark.integration
async def test_list_shows_each_template_and_the_configured_ones_meta_lacks(
    stack: Stack, tmp_path: Path
) -> None:
    code, out, err = await command(stack, COMPANY_PROFILES_FILE=profiles_file(tmp_path, NEW))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "LANGUAGE", "STATUS", "CATEGORY", "QUALITY", "CONFIGURED"]
    rows = {line.split()[0]: line.split() for line in lines[1:] if line.split()}
    assert rows["handoff_agent_alert"][1:] == ["es_AR", "APPROVED", "UTILITY", "GREEN", "yes"]
    assert rows["hello_world"][1:] == ["en_US", "APPROVED", "UTILITY", "GREEN"]
    assert any("aviso_turno (es_AR) is configured but missing at Meta" in line for line in lines)


@pytest.mark.integration
async def test_sync_creates_the_missing_ones_with_their_texts_and_buttons(
    stack: Stack, tmp_path: Path
) -> None:
    profiles = profiles_file(tmp_path, NEW)
    code, out, err = await command(stack, "sync", COMPANY_PROFILES_FILE=profiles)
    assert code == 0, err
    assert "created: aviso_turno (es_AR), PENDING" in out
    assert "exists: handoff_agent_alert (es_AR), APPROVED" in out
    created = (await sandbox_templates(stack))["aviso_turno"]
    assert created["category"] == "UTILITY" and "tu turno de mañana" in created["body"]
    assert [b["text"] for b in created["buttons"]] == ["Cambiar turno"]

    async def approved() -> bool:
        code, out, _ = await command(stack, COMPANY_PROFILES_FILE=profiles)
        row = next(line for line in out.splitlines() if line.startswith("aviso_turno "))
        return code == 0 and row.split()[2] == "APPROVED"

    await wait_for(approved, timeout=20, message="Meta's review approves it")
    code, out, _ = await command(stack, "sync", COMPANY_PROFILES_FILE=profiles)
    assert code == 0 and "created:" not in out  # nothing left to create


@pytest.mark.integration
async def test_sync_names_what_meta_refused_and_exits_1(stack: Stack, tmp_path: Path) -> None:
    bad = {**NEW, "name": "mal_formado", "body": "Tu turno es {{1}}", "body_examples": ["mañana"]}
    code, out, _ = await command(stack, "sync", COMPANY_PROFILES_FILE=profiles_file(tmp_path, bad))
    assert code == 1
    assert "could not create mal_formado (es_AR)" in out and "start or end" in out


@pytest.mark.integration
async def test_without_the_account_id_the_command_says_what_is_missing(stack: Stack) -> None:
    code, _, err = await command(stack, META_WA_BUSINESS_ACCOUNT_ID="")
    assert code == 2 and "META_WA_BUSINESS_ACCOUNT_ID es requerido" in err
    code, _, err = await command(stack, "delete")
    assert code == 2 and "usage: python -m sender templates [sync]" in err


@pytest.mark.integration
async def test_start_up_warns_of_each_configured_template_missing_or_not_approved(
    stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mensajero.sender")
    await stack.emit(
        field="message_template_status_update",
        name="handoff_agent_alert",
        language="es_AR",
        event="PAUSED",
    )
    assert stack.start_app is not None
    await stack.start_app(
        META_WA_BUSINESS_ACCOUNT_ID=WABA, COMPANY_PROFILES_FILE=profiles_file(tmp_path, NEW)
    )
    await wait_for(
        lambda: "aviso_turno (es_AR) is configured but missing at Meta" in caplog.text,
        message="the warning of the missing one",
    )
    assert "handoff_agent_alert (es_AR) is PAUSED at Meta, not APPROVED" in caplog.text
    assert "reengage_customer (es_AR) is" not in caplog.text  # approved: nothing to say
    assert "is not set" not in caplog.text


@pytest.mark.integration
async def test_without_the_account_id_start_up_says_once_that_the_check_is_skipped(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mensajero.sender")
    assert stack.start_app is not None
    await stack.start_app()
    skipped = [r for r in caplog.records if "META_WA_BUSINESS_ACCOUNT_ID is not set" in r.message]
    assert len(skipped) == 1 and skipped[0].levelno == logging.WARNING


@pytest.mark.integration
async def test_start_up_warns_of_a_graph_version_that_expires_soon(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mensajero.sender")
    assert stack.start_app is not None
    on_the_day = Adapters(clock=lambda: datetime(2026, 12, 1, 12, tzinfo=UTC))
    await stack.start_app(on_the_day, META_GRAPH_VERSION="v21.0")
    assert "META_GRAPH_VERSION v21.0 expires in 51 days (2027-01-21" in caplog.text


def test_version_warnings() -> None:
    today = date(2026, 12, 1)
    assert version_warning("v25.0", today) is None
    assert version_warning("v26.0", today) is None  # no expiry announced yet
    assert version_warning("v23.0", today) is None  # 311 days left
    assert "expires in 89 days" in (version_warning("v23.0", date(2027, 7, 11)) or "")
    assert "expired" in (version_warning("v21.0", date(2027, 2, 1)) or "")
    assert "older than every version" in (version_warning("v19.0", today) or "")
    assert "does not look like" in (version_warning("latest", today) or "")


def test_the_default_templates_are_what_handoff_sends() -> None:
    alert, reengage = default_templates()
    assert (alert.name, alert.language, reengage.name, reengage.language) == (
        "handoff_agent_alert",
        "es_AR",
        "reengage_customer",
        "es_AR",
    )
    # handoff.delivery.agent_alert: two body parameters and a quick reply; customer_template:
    # one (the customer's name).
    assert "{{2}}" in alert.body and "{{3}}" not in alert.body and len(alert.body_examples) == 2
    assert [b.type for b in alert.buttons] == ["QUICK_REPLY"]
    assert "{{1}}" in reengage.body and "{{2}}" not in reengage.body
    assert creation_body(alert)["components"] == [
        {
            "type": "BODY",
            "text": alert.body,
            "example": {"body_text": [alert.body_examples]},
        },
        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Atender"}]},
    ]
    assert Profiles().profiles[0].templates == default_templates()


def test_problems_name_each_template() -> None:
    wanted = [TemplateDefinition.model_validate(NEW), *default_templates()]
    states = [
        TemplateState("handoff_agent_alert", "es_AR", "REJECTED", "UTILITY", "UNKNOWN"),
        TemplateState("reengage_customer", "es_AR", "APPROVED", "UTILITY", "GREEN"),
    ]
    found = problems(wanted, states)
    assert len(found) == 2
    assert "aviso_turno (es_AR) is configured but missing" in found[0]
    assert "handoff_agent_alert (es_AR) is REJECTED" in found[1]
