"""The handoff use cases over the repository port: what to change and what to publish.

Each entry point (an inbound message, a handoff request, a timer) returns an :class:`Outcome`:
the events to publish through the outbox, and facts for the metrics, applied only once the
transaction commits. Event ids derive from the source event id, so a re-run publishes the same.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from handoff.config import HandoffOptions, options_for
from handoff.repository import Agent, Case, Conversation, Line, Outgoing, Repository, Timer
from handoff.router import (
    CLAIM_PAYLOAD_PREFIX,
    Addressed,
    Command,
    Plain,
    UnknownCommand,
    describe_opening,
    encode_code,
    is_open,
    menu_choice,
    menu_content,
    next_opening,
    one_line,
    parse_agent_input,
    wants_end,
    wants_human,
    window_open,
)
from handoff.texts import say
from shared.events import (
    BotMessage,
    Event,
    HandoffClaimed,
    HandoffClosed,
    HandoffRequestCommand,
    HandoffRequested,
    HandoffUnattended,
    Identity,
    InboundMessage,
    LocationContent,
    Media,
    MediaContent,
    MessageFailed,
    MessageSent,
    OutboundContent,
    ReactionContent,
    SendMessage,
    TemplateContent,
    TextContent,
    TranscriptLine,
    stable_id,
)
from shared.phone import maybe_e164
from shared.profiles import CompanyProfile, Profiles

log = logging.getLogger("mensajero.handoff")

Clock = Callable[[], datetime]
MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")
CAPTIONED = ("image", "video", "document")
UNATTENDED_REASONS = ("timeout", "no_agent", "after_hours")
WINDOW_CLOSED = 131047  # Meta: more than 24 h since the person last wrote


class QuoteNotKnownYet(Exception):
    """An agent quoted a message whose wamid the sender has not reported yet: try again soon."""


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Fact:
    """Something the metrics count once the transaction has committed."""

    name: str  # requested, claimed, first_response, ended, relay
    label: str = ""
    value: float = 0.0


@dataclass
class Outcome:
    source_id: str
    now: datetime
    events: list[Event] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    wait_for_quotes: bool = False
    _steps: int = 0

    def next_id(self, label: str) -> str:
        self._steps += 1
        return stable_id(self.source_id, f"{self._steps}:{label}")

    def fact(self, name: str, label: str = "", value: float = 0.0) -> None:
        self.facts.append(Fact(name, label, value))


@dataclass(frozen=True)
class HandoffConfig:
    agents: Sequence[str]
    queue_timeout: float
    idle_timeout: float
    bot_mode: str = "menu"


def identity(conv: Conversation) -> Identity:
    return Identity(phone=conv.phone, user_id=conv.user_id, name=conv.name)


def address(conv: Conversation) -> str:
    return conv.phone or conv.user_id or conv.customer


def remembered(
    command: SendMessage,
    code: str,
    role: Literal["agent", "customer"],
    source_wamid: str | None = None,
) -> Outgoing:
    """The ``outgoing`` row of a send command: maps its wamid back to the case."""
    return Outgoing(
        command.event_id, code, command.to, role, source_wamid, body=command.model_dump_json()
    )


def copy_of(media: Media, kind: str, caption: str | None) -> MediaContent:
    """A relay of media someone sent: the sender downloads it from Meta and uploads it again
    (``copy_from_media_id``), so the relay never re-sends an inbound id (those expire)."""
    return MediaContent(
        kind=kind,
        copy_from_media_id=media.id,
        caption=caption if kind in CAPTIONED else None,
        filename=media.filename if kind == "document" else None,
    )


def describe(msg: InboundMessage) -> str:
    """One transcript line for an inbound message."""
    if msg.reaction is not None:
        return f"[reacción {msg.reaction.emoji or 'quitada'}]"
    if msg.location is not None:
        where = msg.location.name or msg.location.address or ""
        return f"[ubicación {where} {msg.location.latitude},{msg.location.longitude}]".strip()
    if msg.media is not None and msg.message_type in MEDIA_KINDS:
        return f"[{msg.message_type}] {msg.text or ''}".strip()
    if msg.text:
        return msg.text
    return f"[{msg.message_type}]"


class Handoff:
    def __init__(
        self, profiles: Profiles, config: HandoffConfig, clock: Clock = system_clock
    ) -> None:
        self.profiles = profiles
        self.config = config
        self.clock = clock

    # ------------------------------------------------------------------ helpers

    def agents_for(self, profile: CompanyProfile) -> list[str]:
        configured = [p for p in (maybe_e164(a) for a in profile.agents) if p]
        return configured or list(self.config.agents)

    def is_agent(self, phone: str | None) -> bool:
        if phone is None:
            return False
        if phone in self.config.agents:
            return True
        return any(phone in self.agents_for(p) for p in self.profiles.profiles)

    def queue_timeout(self, opts: HandoffOptions) -> timedelta:
        seconds = opts.queue_timeout_seconds
        return timedelta(seconds=self.config.queue_timeout if seconds is None else seconds)

    def idle_timeout(self, opts: HandoffOptions) -> timedelta:
        seconds = opts.idle_timeout_seconds
        return timedelta(seconds=self.config.idle_timeout if seconds is None else seconds)

    def _send(
        self,
        out: Outcome,
        to: str,
        content: OutboundContent,
        label: str,
        *,
        fallback: TemplateContent | None = None,
        publish: bool = True,
    ) -> SendMessage:
        command = SendMessage(
            event_id=out.next_id(label),
            to=to,
            content=content,
            fallback_template=fallback,
            origin="handoff",
            correlation_id=out.source_id,
        )
        if publish:
            out.events.append(command)
        return command

    def _customer_template(self, opts: HandoffOptions, conv: Conversation) -> TemplateContent:
        name = one_line(conv.name or "", 60) or "👋"
        return TemplateContent(
            name=opts.customer_template.name,
            language=opts.customer_template.language,
            components=[{"type": "body", "parameters": [{"type": "text", "text": name}]}],
        )

    def _agent_template(
        self, opts: HandoffOptions, case: Case, conv: Conversation, last: str
    ) -> TemplateContent:
        who = f"#{case.code} {conv.name or ''} ({conv.phone or conv.user_id or '-'})"
        return TemplateContent(
            name=opts.agent_template.name,
            language=opts.agent_template.language,
            components=[
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": one_line(who, 200)},
                        {"type": "text", "text": one_line(last or "-", 200)},
                    ],
                },
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": "0",
                    "parameters": [
                        {"type": "payload", "payload": CLAIM_PAYLOAD_PREFIX + case.code}
                    ],
                },
            ],
        )

    async def _to_agent(
        self,
        repo: Repository,
        out: Outcome,
        phone: str,
        content: OutboundContent,
        case: Case,
        conv: Conversation,
        *,
        label: str,
        source_wamid: str | None = None,
        agent: Agent | None = None,
    ) -> None:
        """Send to an agent now when their 24 h window is open; else hold it and alert them."""
        state = agent or await repo.get_agent(phone)
        command = self._send(out, phone, content, label, publish=False)
        await repo.add_outgoing(remembered(command, case.code, "agent", source_wamid))
        if window_open(state.last_inbound_at, out.now):
            out.events.append(command)
            return
        if await repo.hold(phone, case.code, command):
            opts = options_for(self.profiles.by_id(case.profile_id))
            last = content.body if isinstance(content, TextContent) else ""
            alert = self._send(out, phone, self._agent_template(opts, case, conv, last), "alert")
            await repo.add_outgoing(remembered(alert, case.code, "agent"))

    def _to_customer(self, out: Outcome, conv: Conversation, text: str, label: str) -> None:
        self._send(out, address(conv), TextContent(body=text), label)

    def _menu(self, out: Outcome, profile: CompanyProfile, conv: Conversation) -> None:
        self._send(out, address(conv), menu_content(profile), "menu")

    # ------------------------------------------------------------------ entry points

    async def on_inbound(
        self, repo: Repository, msg: InboundMessage, *, wait_for_quotes: bool = False
    ) -> Outcome:
        """``wait_for_quotes``: raise :class:`QuoteNotKnownYet` rather than guess the case."""
        out = Outcome(msg.event_id, self.clock(), wait_for_quotes=wait_for_quotes)
        profile = self.profiles.for_number(msg.phone_number_id)
        sender = maybe_e164(msg.sender.phone)
        if sender is not None and self.is_agent(sender):
            await self._agent_message(repo, out, sender, msg)
        else:
            await self._customer_message(repo, out, profile, msg)
        return out

    async def on_request(self, repo: Repository, command: HandoffRequestCommand) -> Outcome:
        out = Outcome(command.event_id, self.clock())
        profile = self.profiles.for_number(command.phone_number_id)
        phone = maybe_e164(command.customer_phone)
        if phone is None:
            log.warning("handoff.request with an unreadable phone ignored")
            return out
        conv = await repo.get_conversation(phone)
        if conv is None:
            conv = await repo.add_conversation(
                Conversation(
                    phone,
                    phone,
                    None,
                    None,
                    command.phone_number_id or (profile.phone_number_ids or [""])[0],
                    profile.id,
                )
            )
        if conv.state == "bot":
            await self._start_handoff(repo, out, profile, conv, "command")
            await repo.save_conversation(conv)
        return out

    async def on_sent(self, repo: Repository, sent: MessageSent) -> bool:
        # A command can have two sends: its own, and its fallback template's when Meta said
        # (after accepting the first) that the window was closed. The fallback's wamid is the
        # one the person saw and may quote; the first never overrides it, whatever the order.
        return await repo.set_wamid(
            sent.command_id, sent.wamid, replace=sent.used_fallback_template
        )

    async def on_failed(self, repo: Repository, failed: MessageFailed) -> Outcome:
        """A send of ours failed: re-reach an agent by template, or tell the agent."""
        out = Outcome(failed.event_id, self.clock())
        ref = await repo.outgoing_by_command(failed.command_id)
        if ref is None or ref.body is None:
            return out
        case = await repo.get_case(ref.case_code)
        conv = await repo.get_conversation(case.customer) if case else None
        if case is None or conv is None or case.state == "closed":
            return out
        profile = self.profiles.by_id(case.profile_id)
        command = SendMessage.model_validate_json(ref.body)
        code = failed.error.code if failed.error is not None else None
        if ref.role == "agent":
            if code != WINDOW_CLOSED or isinstance(command.content, TemplateContent):
                log.warning("a message to an agent failed: %s", failed.reason)
                return out
            # Meta says the agent's window is closed: keep it and alert them by template.
            agent = await repo.get_agent(ref.recipient)
            agent.last_inbound_at = None
            await repo.save_agent(agent)
            again = command.model_copy(update={"event_id": out.next_id("again")})
            await repo.add_outgoing(remembered(again, case.code, "agent", ref.source_wamid))
            if await repo.hold(ref.recipient, case.code, again):
                opts = options_for(profile)
                last = command.content.body if isinstance(command.content, TextContent) else ""
                alert = self._send(
                    out, ref.recipient, self._agent_template(opts, case, conv, last), "alert"
                )
                await repo.add_outgoing(remembered(alert, case.code, "agent"))
            return out
        if case.agent is not None:
            text = say(
                profile,
                "handoff.agent.delivery_failed",
                code=case.code,
                name=conv.name or conv.phone or "-",
                reason=failed.reason,
            )
            await self._to_agent(
                repo, out, case.agent, TextContent(body=text), case, conv, label="failed"
            )
        return out

    async def on_timer(self, repo: Repository, timer: Timer, source_id: str) -> Outcome:
        out = Outcome(source_id, self.clock())
        case = await repo.get_case(timer.case_code)
        if case is None or case.state == "closed":
            return out
        conv = await repo.get_conversation(case.customer)
        if conv is None:
            return out
        profile = self.profiles.by_id(case.profile_id)
        opts = options_for(profile)
        if timer.kind == "queue" and case.state == "queued":
            await self._unattended(repo, out, profile, case, conv, "timeout")
            if opts.on_queue_timeout == "bot":
                self._to_customer(out, conv, say(profile, "handoff.customer.queue_timeout"), "qt")
                await self._close(repo, out, case, conv, "timeout")
            else:
                text = say(profile, "handoff.customer.queue_timeout_wait")
                self._to_customer(out, conv, text, "qt-wait")
        elif timer.kind == "idle" and case.state == "active":
            due = case.last_activity_at + self.idle_timeout(opts)
            if due > out.now:  # activity since it was scheduled
                await repo.schedule(case.code, "idle", due)
                return out
            await self._close(repo, out, case, conv, "idle")
        await repo.save_conversation(conv)
        return out

    # ------------------------------------------------------------------ customers

    async def _customer_message(
        self, repo: Repository, out: Outcome, profile: CompanyProfile, msg: InboundMessage
    ) -> None:
        who = msg.sender
        phone = maybe_e164(who.phone)
        key = phone or who.key
        at = msg.timestamp if msg.timestamp.tzinfo else msg.timestamp.replace(tzinfo=UTC)
        conv = await repo.get_conversation(key)
        if conv is None:
            conv = await repo.add_conversation(
                Conversation(key, phone, who.user_id, who.name, msg.phone_number_id, profile.id)
            )
        conv.phone = phone or conv.phone
        conv.user_id = who.user_id or conv.user_id
        conv.name = who.name or conv.name
        conv.phone_number_id = msg.phone_number_id
        if conv.last_inbound_at is None or at > conv.last_inbound_at:
            conv.last_inbound_at = at
        # Their window is open again: what waited for it goes now, before anything new.
        out.events.extend(await repo.take_held(key))
        await repo.add_line(key, Line(at, "customer", describe(msg), conv.case_code))

        case = await repo.get_case(conv.case_code) if conv.case_code else None
        if conv.state != "bot" and (case is None or case.state == "closed"):
            log.warning("conversation pointed at no open case; back to the bot: %s", key)
            conv.state, conv.case_code, case = "bot", None, None
        opts = options_for(profile)
        if case is None:
            await self._bot(repo, out, profile, conv, msg)
        elif wants_end(msg.text, opts.end_phrases):
            await self._close(repo, out, case, conv, "customer")
        elif case.state == "queued":
            if self._asks_for_human(profile, msg):
                text = say(profile, "handoff.customer.already_queued")
                self._to_customer(out, conv, text, "already-queued")
        else:
            await self._relay_to_agent(repo, out, case, conv, msg)
        await repo.save_conversation(conv)

    def _asks_for_human(self, profile: CompanyProfile, msg: InboundMessage) -> bool:
        choice = menu_choice(profile, msg.reply.id if msg.reply else None)
        if choice is not None:
            return choice.action == "handoff"
        return wants_human(msg.text, profile.handoff_phrases)

    async def _bot(
        self,
        repo: Repository,
        out: Outcome,
        profile: CompanyProfile,
        conv: Conversation,
        msg: InboundMessage,
    ) -> None:
        choice = menu_choice(profile, msg.reply.id if msg.reply else None)
        if choice is not None and choice.action == "handoff":
            await self._start_handoff(repo, out, profile, conv, "button")
        elif choice is None and wants_human(msg.text, profile.handoff_phrases):
            await self._start_handoff(repo, out, profile, conv, "phrase")
        elif self.config.bot_mode == "external":
            out.events.append(
                BotMessage(
                    event_id=out.next_id("bot"),
                    message=msg,
                    profile_id=profile.id,
                    correlation_id=out.source_id,
                )
            )
        elif choice is not None:
            self._to_customer(out, conv, choice.reply or profile.menu.body, "menu-reply")
        elif msg.reaction is None:
            self._menu(out, profile, conv)

    async def _start_handoff(
        self,
        repo: Repository,
        out: Outcome,
        profile: CompanyProfile,
        conv: Conversation,
        trigger: str,
    ) -> None:
        opts = options_for(profile)
        now = out.now
        code = encode_code(await repo.next_case_number())
        case = Case(
            code, conv.customer, conv.phone_number_id, profile.id, "queued", trigger, now, now
        )
        await repo.add_case(case)
        conv.state, conv.case_code = "queued", code
        if trigger != "command":
            await repo.adopt_last_line(conv.customer, code)
        out.events.append(
            HandoffRequested(
                event_id=out.next_id("requested"),
                case_code=code,
                phone_number_id=conv.phone_number_id,
                customer=identity(conv),
                trigger=trigger,
                profile_id=profile.id,
                correlation_id=out.source_id,
            )
        )
        out.fact("requested", trigger)
        if not self.agents_for(profile):
            self._to_customer(out, conv, say(profile, "handoff.customer.no_agent"), "no-agent")
            await self._unattended(repo, out, profile, case, conv, "no_agent")
            await self._close(repo, out, case, conv, "no_agent")
            return
        if not is_open(opts.business_hours, profile.timezone, now):
            opening = next_opening(opts.business_hours, profile.timezone, now)
            sentence = (
                say(profile, "handoff.customer.next_open", when=describe_opening(opening))
                if opening
                else ""
            )
            text = say(profile, "handoff.customer.after_hours", next_open_sentence=sentence)
            self._to_customer(out, conv, " ".join(text.split(" ")), "after-hours")
            await self._unattended(repo, out, profile, case, conv, "after_hours")
            if opts.after_hours == "close":
                await self._close(repo, out, case, conv, "after_hours")
                return
        else:
            self._to_customer(out, conv, say(profile, "handoff.customer.queued"), "queued")
        await self._notify_agents(repo, out, profile, case, conv)
        await repo.schedule(code, "queue", now + self.queue_timeout(opts))

    async def _notify_agents(
        self,
        repo: Repository,
        out: Outcome,
        profile: CompanyProfile,
        case: Case,
        conv: Conversation,
    ) -> None:
        opts = options_for(profile)
        lines = [
            line
            for line in await repo.last_lines(conv.customer, opts.last_messages)
            if line.author == "customer"
        ]
        listing = "\n".join(f"› {line.text}" for line in lines) or say(
            profile, "handoff.agent.notification_no_messages"
        )
        load = Counter(c.agent for c in await repo.open_cases() if c.state == "active")
        agents = self.agents_for(profile)
        free = [a for a in agents if load[a] < opts.max_cases_per_agent] or agents
        body = say(
            profile,
            "handoff.agent.notification",
            code=case.code,
            name=conv.name or "-",
            phone=conv.phone or conv.user_id or "-",
            last_messages=listing,
        )
        last = lines[-1].text if lines else ""
        template = self._agent_template(opts, case, conv, last)
        for phone in free:
            agent = await repo.get_agent(phone)
            if window_open(agent.last_inbound_at, out.now):
                command = self._send(
                    out, phone, TextContent(body=body), f"notify:{phone}", fallback=template
                )
            else:
                command = self._send(out, phone, template, f"notify:{phone}")
            await repo.add_outgoing(remembered(command, case.code, "agent"))

    async def _unattended(
        self,
        repo: Repository,
        out: Outcome,
        profile: CompanyProfile,
        case: Case,
        conv: Conversation,
        reason: str,
    ) -> None:
        lines = await repo.last_lines(conv.customer, options_for(profile).last_messages)
        out.events.append(
            HandoffUnattended(
                event_id=out.next_id(f"unattended:{reason}"),
                case_code=case.code,
                customer=identity(conv),
                reason=reason,
                profile_id=profile.id,
                last_messages=[
                    TranscriptLine(at=x.at, author=x.author, text=x.text) for x in lines
                ],
                correlation_id=out.source_id,
            )
        )

    async def _relay_to_agent(
        self, repo: Repository, out: Outcome, case: Case, conv: Conversation, msg: InboundMessage
    ) -> None:
        assert case.agent is not None
        profile = self.profiles.by_id(case.profile_id)
        values = {"code": case.code, "name": conv.name or conv.phone or "-"}
        contents: list[OutboundContent] = []
        kind = msg.message_type
        if msg.reaction is not None:
            target = await repo.outgoing_by_wamid(msg.reaction.message_id)
            if target is not None and target.role == "customer" and target.source_wamid:
                contents.append(
                    ReactionContent(message_id=target.source_wamid, emoji=msg.reaction.emoji or "")
                )
            else:
                emoji = msg.reaction.emoji or ""
                text = say(profile, "handoff.agent.relay_reaction", emoji=emoji, **values)
                contents.append(TextContent(body=text))
            kind = "reaction"
        elif msg.location is not None:
            loc = msg.location
            text = say(profile, "handoff.agent.relay_location", **values)
            contents.append(TextContent(body=text))
            contents.append(
                LocationContent(
                    latitude=loc.latitude,
                    longitude=loc.longitude,
                    name=loc.name,
                    address=loc.address,
                )
            )
            kind = "location"
        elif msg.media is not None and msg.media.id and kind in MEDIA_KINDS:
            header = say(profile, "handoff.agent.relay_header", **values)
            if kind in CAPTIONED:
                caption = f"{header}\n{msg.text}" if msg.text else header
                contents.append(copy_of(msg.media, kind, caption[:1024]))
            else:
                contents.append(
                    TextContent(body=say(profile, "handoff.agent.relay_media", **values))
                )
                contents.append(copy_of(msg.media, kind, None))
            kind = "media"
        elif msg.text:
            header = say(profile, "handoff.agent.relay_header", **values)
            contents.append(TextContent(body=f"{header}\n{msg.text}"[:4096]))
            kind = "text"
        else:
            text = say(profile, "handoff.agent.relay_unsupported", kind=msg.message_type, **values)
            contents.append(TextContent(body=text))
            kind = "unsupported"
        for index, content in enumerate(contents):
            await self._to_agent(
                repo,
                out,
                case.agent,
                content,
                case,
                conv,
                label=f"relay:{index}",
                source_wamid=msg.wamid,
            )
        case.last_activity_at = out.now
        await repo.save_case(case)
        await repo.schedule(case.code, "idle", out.now + self.idle_timeout(options_for(profile)))
        out.fact("relay", "to_agent", 0.0)
        out.fact("relay_kind", kind)

    # ------------------------------------------------------------------ agents

    async def _agent_message(
        self, repo: Repository, out: Outcome, phone: str, msg: InboundMessage
    ) -> None:
        agent = await repo.get_agent(phone)
        at = msg.timestamp if msg.timestamp.tzinfo else msg.timestamp.replace(tzinfo=UTC)
        if agent.last_inbound_at is None or at > agent.last_inbound_at:
            agent.last_inbound_at = at
        out.events.extend(await repo.take_held(phone))
        payload = msg.reply.id if msg.reply is not None else None
        text = None if msg.reaction is not None else msg.text
        if msg.reply is not None and payload and payload.startswith(CLAIM_PAYLOAD_PREFIX):
            text = None
        parsed = parse_agent_input(text, payload)
        profile = self.profiles.for_number(msg.phone_number_id)

        if isinstance(parsed, Command):
            await self._command(repo, out, profile, agent, parsed, msg)
        elif isinstance(parsed, UnknownCommand):
            help_text = say(profile, "handoff.agent.help")
            reply = say(
                profile, "handoff.agent.unknown_command", command=parsed.command, help=help_text
            )
            self._tell(out, phone, reply, "unknown-command")
        elif isinstance(parsed, Addressed):
            case = await repo.get_case(parsed.code)
            if case is None:
                reply = say(profile, "handoff.agent.unknown_case", code=parsed.code)
                self._tell(out, phone, reply, "unknown-case")
            else:
                await self._agent_to_case(repo, out, agent, case, msg, parsed.text)
        else:
            assert isinstance(parsed, Plain)
            await self._agent_plain(repo, out, profile, agent, msg, parsed.text)
        await repo.save_agent(agent)

    def _tell(self, out: Outcome, phone: str, text: str, label: str) -> None:
        """Answer an agent who just wrote (their window is open)."""
        self._send(out, phone, TextContent(body=text), label)

    async def _agent_plain(
        self,
        repo: Repository,
        out: Outcome,
        profile: CompanyProfile,
        agent: Agent,
        msg: InboundMessage,
        text: str,
    ) -> None:
        quoted = msg.reaction.message_id if msg.reaction is not None else None
        if quoted is None and msg.context is not None:
            quoted = msg.context.message_id
        case: Case | None = None
        if quoted:
            # Ask what is still unmapped first: a wamid learnt in between is then found below.
            pending = out.wait_for_quotes and await repo.awaiting_wamid(agent.phone)
            ref = await repo.outgoing_by_wamid(quoted)
            if ref is not None and ref.role == "agent":
                case = await repo.get_case(ref.case_code)
            elif ref is None and pending:
                raise QuoteNotKnownYet(quoted)
        if case is None and agent.current_case:
            current = await repo.get_case(agent.current_case)
            if current is not None and current.state == "active" and current.agent == agent.phone:
                case = current
        if case is None:
            open_cases = await repo.open_cases()
            mine = [c for c in open_cases if c.state == "active" and c.agent == agent.phone]
            if len(mine) == 1:
                case = mine[0]
            else:
                cases = await self._listing(repo, profile, agent, open_cases)
                reply = say(profile, "handoff.agent.which_case", cases=cases)
                self._tell(out, agent.phone, reply, "which-case")
                return
        await self._agent_to_case(repo, out, agent, case, msg, text)

    async def _listing(
        self, repo: Repository, profile: CompanyProfile, agent: Agent, cases: list[Case]
    ) -> str:
        lines = []
        for case in cases:
            conv = await repo.get_conversation(case.customer)
            values = {
                "code": case.code,
                "name": (conv.name if conv else None) or "-",
                "phone": (conv.phone if conv else None) or "-",
            }
            if case.state == "queued":
                lines.append(say(profile, "handoff.agent.list_line_queued", **values))
            else:
                mine = case.agent == agent.phone
                who = say(profile, "handoff.agent.list_you" if mine else "handoff.agent.list_other")
                lines.append(say(profile, "handoff.agent.list_line_active", who=who, **values))
        return "\n".join(lines) or say(profile, "handoff.agent.no_cases")

    async def _command(
        self,
        repo: Repository,
        out: Outcome,
        profile: CompanyProfile,
        agent: Agent,
        command: Command,
        msg: InboundMessage,
    ) -> None:
        phone = agent.phone
        if command.name == "ayuda":
            self._tell(out, phone, say(profile, "handoff.agent.help"), "help")
        elif command.name == "lista":
            cases = await self._listing(repo, profile, agent, await repo.open_cases())
            self._tell(out, phone, say(profile, "handoff.agent.list", cases=cases), "list")
        elif command.name == "tomar":
            if not command.code:
                reply = say(profile, "handoff.agent.missing_code", usage="/tomar <código>")
                self._tell(out, phone, reply, "missing-code")
                return
            case = await repo.get_case(command.code)
            if case is None:
                reply = say(profile, "handoff.agent.unknown_case", code=command.code)
                self._tell(out, phone, reply, "unknown-case")
                return
            await self._agent_to_case(repo, out, agent, case, None, command.text)
        else:  # fin, bot
            code = command.code or agent.current_case
            if code is None:
                mine = [c for c in await repo.open_cases() if c.agent == phone]
                code = mine[0].code if len(mine) == 1 else None
            if code is None:
                self._tell(out, phone, say(profile, "handoff.agent.no_case_to_close"), "no-case")
                return
            case = await repo.get_case(code)
            if case is None:
                self._tell(out, phone, say(profile, "handoff.agent.unknown_case", code=code), "uc")
            elif case.state == "closed":
                self._tell(out, phone, say(profile, "handoff.agent.case_closed", code=code), "cc")
                if agent.current_case == code:
                    agent.current_case = None
            elif case.state == "active" and case.agent != phone:
                reply = say(profile, "handoff.agent.case_not_yours", code=code)
                self._tell(out, phone, reply, "not-yours")
            else:
                conv = await repo.get_conversation(case.customer)
                assert conv is not None
                farewell = "bot" if command.name == "bot" else "agent"
                await self._close(repo, out, case, conv, "agent", acting=agent, farewell=farewell)
                await repo.save_conversation(conv)

    async def _agent_to_case(
        self,
        repo: Repository,
        out: Outcome,
        agent: Agent,
        case: Case,
        msg: InboundMessage | None,
        text: str,
    ) -> None:
        """An agent's message (or claim) for one case: claim it if queued, then relay."""
        profile = self.profiles.by_id(case.profile_id)
        phone = agent.phone
        if case.state == "closed":
            reply = say(profile, "handoff.agent.case_closed", code=case.code)
            self._tell(out, phone, reply, "case-closed")
            return
        if case.state == "active" and case.agent != phone:
            key = "handoff.agent.taken_by_other" if msg is None else "handoff.agent.case_not_yours"
            self._tell(out, phone, say(profile, key, code=case.code), "not-yours")
            return
        content: OutboundContent | None
        if msg is None:
            content = TextContent(body=text[:4096]) if text else None
        elif msg.reaction is not None:
            content = await self._agent_reaction(repo, msg)
        else:
            content = self._agent_content(msg, text)
            if content is None and msg.message_type not in ("text", "interactive", "button"):
                reply = say(profile, "handoff.agent.not_relayable", kind=msg.message_type)
                self._tell(out, phone, reply, "not-relayable")
                return
        if case.state == "queued":
            claimed = await self._claim(repo, out, agent, case, greet=content is None)
            if claimed is None:
                return
            case = claimed
        elif content is None:
            reply = say(profile, "handoff.agent.taken_by_you", code=case.code)
            self._tell(out, phone, reply, "yours")
        agent.current_case = case.code
        if content is not None:
            await self._relay_to_customer(repo, out, case, content, msg, text)

    async def _agent_reaction(self, repo: Repository, msg: InboundMessage) -> OutboundContent:
        """An agent's reaction lands on the customer's own message it was relayed from."""
        assert msg.reaction is not None
        emoji = msg.reaction.emoji or ""
        ref = await repo.outgoing_by_wamid(msg.reaction.message_id)
        if ref is not None and ref.source_wamid:
            return ReactionContent(message_id=ref.source_wamid, emoji=emoji)
        return TextContent(body=emoji or "👍")

    def _agent_content(self, msg: InboundMessage, text: str) -> OutboundContent | None:
        if msg.location is not None:
            loc = msg.location
            return LocationContent(
                latitude=loc.latitude, longitude=loc.longitude, name=loc.name, address=loc.address
            )
        if msg.media is not None and msg.media.id and msg.message_type in MEDIA_KINDS:
            caption = text or None if msg.message_type in CAPTIONED else None
            return copy_of(msg.media, msg.message_type, caption)
        if text:
            return TextContent(body=text[:4096])
        return None

    async def _claim(
        self, repo: Repository, out: Outcome, agent: Agent, case: Case, *, greet: bool
    ) -> Case | None:
        """Atomically take a queued case. None (and the agent told why) when someone was first."""
        profile = self.profiles.by_id(case.profile_id)
        claimed = await repo.claim_case(case.code, agent.phone, out.now)
        if claimed is None:
            current = await repo.get_case(case.code)
            if current is not None and current.state == "active" and current.agent == agent.phone:
                agent.current_case = current.code
                reply = say(profile, "handoff.agent.taken_by_you", code=case.code)
            elif current is not None and current.state == "active":
                reply = say(profile, "handoff.agent.taken_by_other", code=case.code)
            else:
                reply = say(profile, "handoff.agent.case_closed", code=case.code)
            self._tell(out, agent.phone, reply, "claim-lost")
            return None
        conv = await repo.get_conversation(claimed.customer)
        assert conv is not None
        conv.state = "active"
        await repo.save_conversation(conv)
        opts = options_for(profile)
        await repo.cancel_timers(claimed.code)
        await repo.schedule(claimed.code, "idle", out.now + self.idle_timeout(opts))
        agent.current_case = claimed.code
        wait = (out.now - claimed.created_at).total_seconds()
        out.events.append(
            HandoffClaimed(
                event_id=out.next_id("claimed"),
                case_code=claimed.code,
                customer=identity(conv),
                agent_phone=agent.phone,
                wait_seconds=max(wait, 0.0),
                profile_id=profile.id,
                correlation_id=out.source_id,
            )
        )
        out.fact("claimed", "", max(wait, 0.0))
        values = {
            "code": claimed.code,
            "name": conv.name or "-",
            "phone": conv.phone or conv.user_id or "-",
        }
        reply = say(
            profile,
            "handoff.agent.claimed",
            help_line=say(profile, "handoff.agent.claimed_help"),
            **values,
        )
        # What the customer wrote while waiting (the request itself was in the notification).
        backlog = [
            line.text for line in await repo.case_lines(claimed.code) if line.author == "customer"
        ]
        if claimed.trigger != "command":
            backlog = backlog[1:]
        if backlog:
            lines = "\n".join(f"› {t}" for t in backlog)
            reply += "\n" + say(profile, "handoff.agent.claimed_backlog", lines=lines)
        command = self._send(out, agent.phone, TextContent(body=reply), "claimed")
        await repo.add_outgoing(remembered(command, claimed.code, "agent"))
        if greet:
            text = say(profile, "handoff.customer.claimed", company=profile.name)
            self._to_customer(out, conv, text, "greet")
        return claimed

    async def _relay_to_customer(
        self,
        repo: Repository,
        out: Outcome,
        case: Case,
        content: OutboundContent,
        msg: InboundMessage | None,
        text: str,
    ) -> None:
        conv = await repo.get_conversation(case.customer)
        assert conv is not None
        profile = self.profiles.by_id(case.profile_id)
        opts = options_for(profile)
        command = self._send(
            out,
            address(conv),
            content,
            "relay",
            fallback=self._customer_template(opts, conv),
            publish=False,
        )
        source = msg.wamid if msg is not None else None
        await repo.add_outgoing(remembered(command, case.code, "customer", source))
        if window_open(conv.last_inbound_at, out.now):
            out.events.append(command)
        else:
            if await repo.hold(conv.customer, case.code, command):
                template = self._customer_template(opts, conv)
                self._send(out, address(conv), template, "reengage")
            assert case.agent is not None
            name = conv.name or conv.phone or "-"
            reply = say(profile, "handoff.agent.customer_window_closed", name=name)
            self._tell(out, case.agent, reply, "customer-window")
        await repo.add_line(
            conv.customer, Line(out.now, "agent", text or describe_content(content), case.code)
        )
        if case.first_response_at is None:
            case.first_response_at = out.now
            out.fact("first_response", "", (out.now - case.created_at).total_seconds())
        case.last_activity_at = out.now
        await repo.save_case(case)
        await repo.schedule(case.code, "idle", out.now + self.idle_timeout(opts))
        out.fact("relay", "to_customer")
        out.fact("relay_kind", content.kind)

    # ------------------------------------------------------------------ closing

    async def _close(
        self,
        repo: Repository,
        out: Outcome,
        case: Case,
        conv: Conversation,
        reason: str,
        *,
        acting: Agent | None = None,
        farewell: str = "agent",
    ) -> None:
        """Close a case and put the customer back with the bot. The caller saves ``conv``."""
        profile = self.profiles.by_id(case.profile_id)
        case.state, case.end_reason, case.closed_at = "closed", reason, out.now
        await repo.save_case(case)
        conv.state, conv.case_code = "bot", None
        await repo.cancel_timers(case.code)
        out.fact("ended", reason)
        if case.agent is not None:
            agent = acting if acting is not None and acting.phone == case.agent else None
            if agent is None:
                agent = await repo.get_agent(case.agent)
                if agent.current_case == case.code:
                    agent.current_case = None
                    await repo.save_agent(agent)
            elif agent.current_case == case.code:
                agent.current_case = None
        if reason in ("no_agent", "after_hours", "timeout"):
            if reason == "timeout":
                self._menu(out, profile, conv)
            return  # handoff.unattended already tells the notifier
        customer_key = {
            "agent": "handoff.customer.back_to_bot"
            if farewell == "bot"
            else "handoff.customer.closed",
            "customer": "handoff.customer.ended_by_customer",
            "idle": "handoff.customer.idle_closed",
        }[reason]
        self._to_customer(out, conv, say(profile, customer_key), "closed")
        self._menu(out, profile, conv)
        if case.agent is not None:
            agent_key = {
                "agent": "handoff.agent.closed",
                "customer": "handoff.agent.closed_by_customer",
                "idle": "handoff.agent.idle_closed",
            }[reason]
            text = say(profile, agent_key, code=case.code)
            if acting is not None and acting.phone == case.agent:
                self._tell(out, case.agent, text, "closed-agent")
            else:
                await self._to_agent(
                    repo, out, case.agent, TextContent(body=text), case, conv, label="closed-agent"
                )
        lines = await repo.case_lines(case.code)
        out.events.append(
            HandoffClosed(
                event_id=out.next_id("closed"),
                case_code=case.code,
                customer=identity(conv),
                agent_phone=case.agent,
                end_reason=reason,
                profile_id=profile.id,
                transcript=[TranscriptLine(at=x.at, author=x.author, text=x.text) for x in lines],
                correlation_id=out.source_id,
            )
        )


def describe_content(content: OutboundContent) -> str:
    if isinstance(content, TextContent):
        return content.body
    if isinstance(content, MediaContent):
        return f"[{content.kind}] {content.caption or ''}".strip()
    if isinstance(content, LocationContent):
        return f"[ubicación {content.latitude},{content.longitude}]"
    if isinstance(content, ReactionContent):
        return f"[reacción {content.emoji}]"
    return f"[{content.kind}]"
