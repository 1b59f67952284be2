"""Handoff: every inbound message passes here, to the bot, to a human agent, or back.

A customer's conversation is in one of three states: ``bot`` (the built-in menu or an external
bot answers), ``queued`` (a case was opened and the free agents notified; the bot is silent) or
``active`` (one agent claimed the case; messages are relayed both ways). A case ends ``closed``
with its end reason (agent, customer, timeout, no_agent, after_hours, idle) and the customer is
back with the bot. Agents work from plain WhatsApp numbers (``AGENT_WHATSAPP_NUMBER``).

- ``bootstrap`` builds the service (``app`` serves it); ``handlers`` is its handler table and
  background steps: each event runs its use case once, through ``shared.outbox``.
- ``usecases`` are the entry points; the use cases live by actor and lifecycle: ``customers``,
  ``agents``, ``cases``, ``relays``, ``timers``, and ``delivery`` (send now or hold until the
  window opens), over the ``repository`` port (PostgreSQL adapter; the fake is in tests/fakes).
- ``router`` and ``content`` are pure decisions and conversions; ``texts`` what people read.
"""
