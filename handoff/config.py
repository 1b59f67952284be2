"""Handoff's internal configuration: what its use cases need from the settings and profiles.

Three names, three things: ``Settings`` (``handoff.settings``) are the environment variables;
``HandoffConfig`` (here) is what the use cases read, built from them at bootstrap;
``HandoffOptions`` (``handoff.options``) are one company profile's handoff options.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from pydantic import ValidationError

from handoff.options import HandoffOptions, options_for
from handoff.settings import Settings
from shared.phone import maybe_e164
from shared.profiles import CompanyProfile, ProfileError, Profiles


@dataclass(frozen=True)
class HandoffConfig:
    profiles: Profiles
    # AGENT_WHATSAPP_NUMBER (E.164): the agents of every profile that names none of its own.
    agents: Sequence[str]
    # Seconds; a profile's options may set their own.
    queue_timeout: float
    idle_timeout: float
    bot_mode: str = "menu"  # "menu": the profile's built-in menu; "external": bot.message
    echo_quiet: float = 1800.0  # seconds the bot is quiet after an echo (HANDOFF_ECHO_QUIET_...)
    draft_ttl: float = 600.0  # seconds an agent's draft waits for its case (HANDOFF_DRAFT_TTL_...)
    reply_timeout: float = 300.0  # HANDOFF_AGENT_REPLY_TIMEOUT_SECONDS (0: never)
    rating_timeout: float = 900.0  # HANDOFF_RATING_TIMEOUT_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings, profiles: Profiles) -> HandoffConfig:
        """Raises ProfileError for a profile whose handoff options are not valid."""
        for profile in profiles.profiles:
            try:
                options_for(profile)
            except ValidationError as error:
                first = error.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise ProfileError(
                    f"COMPANY_PROFILES_FILE: profile {profile.id}: settings.handoff.{where}: "
                    f"{first['msg']}"
                ) from error
        return cls(
            profiles=profiles,
            agents=settings.agent_numbers,
            queue_timeout=settings.HANDOFF_QUEUE_TIMEOUT_SECONDS,
            idle_timeout=settings.HANDOFF_IDLE_TIMEOUT_SECONDS,
            bot_mode=settings.BOT_MODE,
            echo_quiet=settings.HANDOFF_ECHO_QUIET_SECONDS,
            draft_ttl=settings.HANDOFF_DRAFT_TTL_SECONDS,
            reply_timeout=settings.HANDOFF_AGENT_REPLY_TIMEOUT_SECONDS,
            rating_timeout=settings.HANDOFF_RATING_TIMEOUT_SECONDS,
        )

    def agents_for(self, profile: CompanyProfile) -> list[str]:
        configured = [p for p in (maybe_e164(a) for a in profile.agents) if p]
        return configured or list(self.agents)

    def serves(self, phone: str, profile: CompanyProfile) -> bool:
        """``phone`` is one of ``profile``'s agents."""
        return phone in self.agents_for(profile)

    def is_agent(self, phone: str | None) -> bool:
        if phone is None:
            return False
        if phone in self.agents:
            return True
        return any(phone in self.agents_for(p) for p in self.profiles.profiles)

    def queue_timeout_for(self, options: HandoffOptions) -> timedelta:
        seconds = options.queue_timeout_seconds
        return timedelta(seconds=self.queue_timeout if seconds is None else seconds)

    def idle_timeout_for(self, options: HandoffOptions) -> timedelta:
        seconds = options.idle_timeout_seconds
        return timedelta(seconds=self.idle_timeout if seconds is None else seconds)

    def echo_quiet_for(self, options: HandoffOptions) -> timedelta:
        seconds = options.echo_quiet_seconds
        return timedelta(seconds=self.echo_quiet if seconds is None else seconds)

    def reply_timeout_for(self, options: HandoffOptions) -> timedelta | None:
        """How long a customer waits for the agent's answer before others are offered the
        case; None: never."""
        seconds = options.agent_reply_timeout_seconds
        value = self.reply_timeout if seconds is None else seconds
        return timedelta(seconds=value) if value > 0 else None

    def rating_timeout_for(self, options: HandoffOptions) -> timedelta:
        seconds = options.rating.timeout_seconds
        return timedelta(seconds=self.rating_timeout if seconds is None else seconds)
