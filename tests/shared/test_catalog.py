"""The AsyncAPI document is what the code says, and the flows match the queues' bindings."""

from __future__ import annotations

from pathlib import Path

from handoff.handlers import TABLE as HANDOFF_TABLE
from notifier.handlers import TABLE as NOTIFIER_TABLE
from sender.app import send_queue_spec, status_queue_spec
from sender.settings import Settings as SenderSettings
from shared.catalog import FLOWS, render
from shared.events import ALL_EVENTS

handoff_queue = HANDOFF_TABLE.spec
DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


def test_document_is_up_to_date() -> None:
    assert DOC.read_text("utf-8") == render(), (
        "docs/asyncapi.yaml is stale: run `python -m shared.catalog > docs/asyncapi.yaml`"
    )


def test_every_event_has_a_flow() -> None:
    assert {cls.TYPE for cls in ALL_EVENTS} == set(FLOWS)


def test_flows_match_queue_bindings() -> None:
    sender = SenderSettings(META_WA_ACCESS_TOKEN="t", META_WA_PHONE_NUMBER_ID="1")
    bound = {
        "sender": {*send_queue_spec(sender).routing_keys, *status_queue_spec(sender).routing_keys},
        "handoff": set(handoff_queue().routing_keys),
        "notifier": set(NOTIFIER_TABLE.routing_keys),
    }
    for service, keys in bound.items():
        documented = {t for t, (_p, consumers) in FLOWS.items() if service in consumers}
        assert documented == keys, service
