"""Webhooks about the account, the number and the templates, for `POST /_sandbox/webhooks/emit`.

`account_update` (every event of Meta's reference, each with its detail object by default),
`phone_number_quality_update`, `phone_number_name_update`, and the four template fields, which
change the template at the sandbox (a PAUSED template then answers 132015).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox.payloads import account_envelope
from sandbox.phones import InboundError
from sandbox.signals_customer import Built
from sandbox.state import SandboxState
from sandbox.template_events import (
    change_category,
    change_components,
    change_quality,
    change_status,
)
from sandbox.templates import STATUSES, Category, Quality, Template


class AccountSignal(BaseModel):
    model_config = ConfigDict(extra="allow")

    field: str
    event: str = "ACCOUNT_RESTRICTION"


def _waba_info(state: SandboxState) -> dict[str, Any]:
    return {"waba_id": state.config.waba_id, "owner_business_id": "300000000000001"}


def _account_details(state: SandboxState, event: str, now: float) -> dict[str, Any]:
    """Meta's detail object for each `account_update` event (the reference's examples)."""
    if event == "ACCOUNT_RESTRICTION":
        restriction = {
            "restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING",
            "expiration": int(now + 7 * 24 * 3600),
        }
        return {"restriction_info": [restriction]}
    if event == "ACCOUNT_VIOLATION":
        return {"violation_info": {"violation_type": "SCAM"}}
    if event == "DISABLED_UPDATE":
        date = time.strftime("%B %d, %Y", time.gmtime(now)).replace(" 0", " ")
        return {"ban_info": {"waba_ban_state": "DISABLE", "waba_ban_date": date}}
    if event == "VOLUME_BASED_PRICING_TIER_UPDATE":
        tier = {
            "tier_update_time": int(now),
            "pricing_category": "UTILITY",
            "tier": "25000001:50000000",
            "effective_month": time.strftime("%Y-%m", time.gmtime(now)),
            "region": "Argentina",
        }
        return {"volume_tier_info": tier}
    if event == "PARTNER_REMOVED":
        return {"waba_info": _waba_info(state)}
    if event.startswith("PARTNER_APP_"):
        return {"waba_info": {**_waba_info(state), "partner_app_id": "400000000000001"}}
    if event in ("PARTNER_ADDED", "AD_ACCOUNT_LINKED", "MM_LITE_TERMS_SIGNED"):
        return {"waba_info": _waba_info(state)}
    if event == "PARTNER_CLIENT_CERTIFICATION_STATUS_UPDATE":
        info = {"client_business_id": "300000000000001", "status": "APPROVED"}
        return {"partner_client_certification_info": {**info, "rejection_reasons": ["NONE"]}}
    if event == "AUTH_INTL_PRICE_ELIGIBILITY_UPDATE":
        return {"auth_international_rate_eligibility": {"start_time": int(now)}}
    if event == "BUSINESS_PRIMARY_LOCATION_COUNTRY_UPDATE":
        return {"country": "AR"}
    return {}  # ACCOUNT_DELETED, ACCOUNT_OFFBOARDED, ACCOUNT_RECONNECTED: the event alone


def account_update(state: SandboxState, signal: AccountSignal) -> Built:
    """Any `account_update` event; the fields given replace the default detail objects.
    `ACCOUNT_DISABLED` (a name some partners use) is Meta's DISABLED_UPDATE with DISABLE."""
    now = state.clock()
    event = "DISABLED_UPDATE" if signal.event == "ACCOUNT_DISABLED" else signal.event
    given = {k: v for k, v in (signal.model_extra or {}).items()}
    value: dict[str, Any] = {"event": event, **_account_details(state, event, now), **given}
    state.account.apply(value)
    return account_envelope(state.config, "account_update", value, now), {}


class QualitySignal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str
    # THROUGHPUT_UPGRADE and ONBOARDING today; older webhooks also sent UPGRADE, DOWNGRADE,
    # FLAGGED and UNFLAGGED, which the sandbox sends too when asked.
    event: str = "THROUGHPUT_UPGRADE"
    current_limit: str | None = None
    old_limit: str | None = None
    max_daily_conversations_per_business: str | None = None


def phone_number_quality_update(state: SandboxState, signal: QualitySignal) -> Built:
    value: dict[str, Any] = {"display_phone_number": state.config.display_digits}
    value["event"] = signal.event
    defaults = {
        "THROUGHPUT_UPGRADE": ("TIER_UNLIMITED", None),
        "DOWNGRADE": ("TIER_2K", "TIER_10K"),
        "UPGRADE": ("TIER_10K", "TIER_2K"),
    }.get(signal.event, ("TIER_2K", None))
    if signal.old_limit or defaults[1]:
        value["old_limit"] = signal.old_limit or defaults[1]
    value["current_limit"] = signal.current_limit or defaults[0]
    value["max_daily_conversations_per_business"] = (
        signal.max_daily_conversations_per_business or value["current_limit"]
    )
    return account_envelope(state.config, "phone_number_quality_update", value, state.clock()), {}


class NameSignal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str
    decision: Literal["APPROVED", "DEFERRED", "PENDING", "REJECTED"] = "APPROVED"
    requested_verified_name: str = "Mensajero Demo"
    rejection_reason: str | None = None


def phone_number_name_update(state: SandboxState, signal: NameSignal) -> Built:
    rejected = signal.decision == "REJECTED"
    value = {
        "display_phone_number": state.config.display_digits,
        "decision": signal.decision,
        "requested_verified_name": signal.requested_verified_name,
        "rejection_reason": signal.rejection_reason
        or ("NAME_FORMAT_UNACCEPTABLE" if rejected else None),
    }
    return account_envelope(state.config, "phone_number_name_update", value, state.clock()), {}


# --- templates ------------------------------------------------------------------------------


class TemplateSignal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str
    name: str = Field(min_length=1)
    language: str = Field(min_length=1)


def _template(state: SandboxState, signal: TemplateSignal) -> Template:
    template = state.templates.get(signal.name, signal.language)
    if template is None:
        raise InboundError(f"no template {signal.name!r} in {signal.language!r}")
    return template


class StatusSignal(TemplateSignal):
    event: str = "APPROVED"
    reason: str | None = None


def message_template_status_update(state: SandboxState, signal: StatusSignal) -> Built:
    """A review decision (APPROVED, REJECTED) or a later status (PAUSED, DISABLED, ...)."""
    if signal.event not in STATUSES:
        raise InboundError(f"event must be one of {', '.join(STATUSES)}, got {signal.event!r}")
    template = _template(state, signal)
    return change_status(state, template, signal.event, signal.reason), {}


class TemplateQualitySignal(TemplateSignal):
    new_quality_score: Quality = "YELLOW"


def message_template_quality_update(state: SandboxState, signal: TemplateQualitySignal) -> Built:
    return change_quality(state, _template(state, signal), signal.new_quality_score), {}


class CategorySignal(TemplateSignal):
    new_category: Category = "MARKETING"
    # Announce the change 24 h ahead (`correct_category`) instead of making it.
    impending: bool = False


def template_category_update(state: SandboxState, signal: CategorySignal) -> Built:
    template = _template(state, signal)
    return change_category(state, template, signal.new_category, impending=signal.impending), {}


class ComponentsSignal(TemplateSignal):
    body: str | None = None
    header: str | None = None
    footer: str | None = None


def message_template_components_update(state: SandboxState, signal: ComponentsSignal) -> Built:
    template = _template(state, signal)
    texts = {"body": signal.body, "header": signal.header, "footer": signal.footer}
    return change_components(state, template, **texts), {}
