"""What Meta tells the sender besides statuses, on the status queue: templates' status, category
and quality, customers' marketing preferences and identity changes, the account's standing.

Each is kept in PostgreSQL (database-wide): :func:`refresh_state`, a loop on every replica,
reads the templates into the replica's ``TemplateBook`` and sets the database-wide gauges
(``whatsapp_template_status``, ``whatsapp_account_restricted``), so every replica acts on the
same and reports the same. The replica that handled an event refreshes at once.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sender.customers import identifiers_of, link
from sender.deps import Deps
from sender.store import TemplateUpdate
from shared.bus import Delivery
from shared.events import Identity
from shared.logs import fields
from shared.signals import (
    ACCOUNT_ALERTS,
    AccountUpdate,
    IdentityChanged,
    PreferenceChanged,
    TemplateCategoryUpdate,
    TemplateQualityUpdate,
    TemplateStatusUpdate,
)

log = logging.getLogger("mensajero.sender")

# Template status events that are not a status: FLAGGED is a quality warning (the template
# still sends); REINSTATED brings a paused or flagged template back.
STATUS_OF_EVENT: dict[str, str | None] = {"FLAGGED": None, "REINSTATED": "APPROVED"}


async def on_template_status(deps: Deps, event: TemplateStatusUpdate, delivery: Delivery) -> None:
    status = STATUS_OF_EVENT.get(event.event, event.event)
    if event.needs_attention:
        log.warning(
            "Meta changed a template's status",
            extra=fields(template=event.template_name, language=event.language, status=status),
        )
    await _save(deps, _update(event, status=status, category=event.category))


async def on_template_quality(deps: Deps, event: TemplateQualityUpdate, delivery: Delivery) -> None:
    await _save(deps, _update(event, quality=event.new_quality))


async def on_template_category(
    deps: Deps, event: TemplateCategoryUpdate, delivery: Delivery
) -> None:
    if event.effective_at is not None and event.effective_at > deps.clock():
        # Announced: the template changes category (and price) at that time.
        update = _update(
            event, next_category=event.new_category, next_category_at=event.effective_at
        )
    else:
        update = _update(event, category=event.new_category)
    await _save(deps, update)


async def on_preference(deps: Deps, event: PreferenceChanged, delivery: Delivery) -> None:
    identifiers = identifiers_of(event.customer)
    if not identifiers or not (event.stops_marketing or event.allows_marketing):
        return
    await link(deps.store, deps.customers, identifiers)
    await deps.store.set_marketing(
        identifiers,
        stopped=event.stops_marketing,
        at=event.timestamp,
        source=f"user_preferences:{event.value}",
    )
    log.info(
        "a customer's marketing preference changed",
        extra=fields(customer=identifiers[0], value=event.value),
    )


async def on_identity(deps: Deps, event: IdentityChanged, delivery: Delivery) -> None:
    """The previous and the current identity are one customer."""
    await link(
        deps.store,
        deps.customers,
        [*identifiers_of(event.current), *identifiers_of(event.previous)],
    )


async def learn_identity(deps: Deps, identity: Identity) -> None:
    """A status naming the recipient by phone and BSUID: one customer."""
    identifiers = identifiers_of(identity)
    if len(identifiers) > 1:
        await link(deps.store, deps.customers, identifiers)


async def on_account(deps: Deps, event: AccountUpdate, delivery: Delivery) -> None:
    state = event.state
    if state is None:
        return  # partners, pricing tiers, ...: nothing about the account's standing
    if event.needs_attention:
        log.error(
            "Meta reports the WhatsApp Business Account restricted",
            extra=fields(waba=event.waba_id, state=state, event=event.event),
        )
    await deps.store.set_account_state(event.waba_id or "", state, event.event, event.occurred_at)
    await refresh_account(deps)


async def refresh_state(deps: Deps) -> None:
    """The replica's template book and the database-wide gauges, from PostgreSQL."""
    await refresh_templates(deps)
    await refresh_account(deps)


async def refresh_templates(deps: Deps) -> None:
    states = await deps.store.templates(deps.clock())
    deps.templates.replace(states)
    deps.metrics.set_template_statuses(
        (s.name, s.language, s.status) for s in states if s.status is not None
    )


async def refresh_account(deps: Deps) -> None:
    states = await deps.store.account_states()
    deps.metrics.account_restricted.set(1 if ACCOUNT_ALERTS & set(states) else 0)


TemplateEvent = TemplateStatusUpdate | TemplateQualityUpdate | TemplateCategoryUpdate


def _update(
    event: TemplateEvent,
    *,
    status: str | None = None,
    category: str | None = None,
    quality: str | None = None,
    next_category: str | None = None,
    next_category_at: datetime | None = None,
) -> TemplateUpdate:
    return TemplateUpdate(
        name=event.template_name,
        language=event.language,
        template_id=event.template_id,
        at=event.occurred_at,
        status=status,
        category=category,
        quality=quality,
        next_category=next_category,
        next_category_at=next_category_at,
    )


async def _save(deps: Deps, update: TemplateUpdate) -> None:
    if await deps.store.save_template(update):
        await refresh_templates(deps)
    else:
        log.info(
            "template event for a template not known by name: ignored",
            extra=fields(template_id=update.template_id),
        )
