"""The event catalog as an AsyncAPI 2.6 document, generated from the models.

    python -m shared.catalog > docs/asyncapi.yaml

A test keeps ``docs/asyncapi.yaml`` equal to what this prints, so the document never drifts
from the code. Each channel is a routing key on the topic exchange (``BUS_PREFIX``).
"""

from __future__ import annotations

from typing import Any

import yaml

from shared.events import ALL_EVENTS, Event

# Who publishes each event and who consumes it (documentation; the queues' bindings are the
# truth, and tests/shared/test_catalog.py checks these against them).
FLOWS: dict[str, tuple[str, tuple[str, ...]]] = {
    "whatsapp.message.received": ("gateway", ("handoff",)),
    "whatsapp.status.received": ("gateway", ("sender",)),
    "whatsapp.errors.received": ("gateway", ("notifier",)),
    "whatsapp.template.status": ("gateway", ("sender", "notifier")),
    "whatsapp.template.quality": ("gateway", ("sender",)),
    "whatsapp.template.category": ("gateway", ("sender", "notifier")),
    "whatsapp.template.components": ("gateway", ()),
    "whatsapp.echo.received": ("gateway", ("handoff",)),
    "whatsapp.history.received": ("gateway", ()),
    "whatsapp.contacts.synced": ("gateway", ()),
    "whatsapp.preference.changed": ("gateway", ("sender",)),
    "whatsapp.identity.changed": ("gateway", ("handoff", "sender")),
    "whatsapp.account.updated": ("gateway", ("sender", "notifier")),
    "whatsapp.phone_number.quality": ("gateway", ("notifier",)),
    "whatsapp.phone_number.name": ("gateway", ()),
    "whatsapp.call.received": ("gateway", ()),
    "whatsapp.call.status": ("gateway", ()),
    "whatsapp.field.received": ("gateway", ()),
    "ses.bounce": ("gateway", ("notifier",)),
    "ses.complaint": ("gateway", ("notifier",)),
    "ses.delivery": ("gateway", ("notifier",)),
    "whatsapp.send.requested": ("handoff, integrations", ("sender",)),
    "whatsapp.send.accepted": ("sender", ("handoff",)),
    "whatsapp.send.failed": ("sender", ("handoff",)),
    "handoff.requested": ("handoff", ()),
    "handoff.claimed": ("handoff", ()),
    "handoff.unattended": ("handoff", ("notifier",)),
    "handoff.closed": ("handoff", ("notifier",)),
    "handoff.request": ("integrations", ("handoff",)),
    "bot.message": ("handoff", ("an external bot",)),
    "error.reported": ("sender, handoff", ("notifier",)),
    "notifier.email.queued": ("notifier", ("notifier",)),
}


def _first_line(cls: type[Event]) -> str:
    return (cls.__doc__ or cls.__name__).strip().splitlines()[0]


def asyncapi() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for cls in ALL_EVENTS:
        producer, consumers = FLOWS.get(cls.TYPE, ("?", ()))
        schema = cls.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            schemas[name] = definition
        schemas[cls.__name__] = schema
        channels[cls.TYPE] = {
            "description": (
                f"{_first_line(cls)} Published by {producer}; consumed by "
                f"{', '.join(consumers) or 'nobody by default (integrations may bind)'}."
            ),
            "subscribe": {
                "operationId": f"on_{cls.TYPE.replace('.', '_')}",
                "message": {"$ref": f"#/components/messages/{cls.__name__}"},
            },
        }
    messages = {
        cls.__name__: {
            "name": cls.TYPE,
            "title": cls.__name__,
            "summary": _first_line(cls),
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{cls.__name__}"},
        }
        for cls in ALL_EVENTS
    }
    return {
        "asyncapi": "2.6.0",
        "info": {
            "title": "Mensajero events",
            "version": "1",
            "description": (
                "Every event travels on one durable topic exchange named BUS_PREFIX, with its "
                "type as the routing key; persistent, confirmed, mandatory. AMQP properties: "
                "message_id = event_id, type = the event type, correlation_id = the wamid or "
                "request that started the chain. Consumers deduplicate on event_id."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {"url": "amqp://127.0.0.1:5672/", "protocol": "amqp"},
        },
        "channels": channels,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def render() -> str:
    return yaml.safe_dump(asyncapi(), sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    print(render(), end="")
