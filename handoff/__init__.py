"""Handoff: every inbound message passes here, to the bot, to a human agent, or back.

A customer's conversation is in one of three states: ``bot`` (the built-in menu or an external
bot answers), ``queued`` (a case was opened and the free agents notified; the bot is silent) or
``active`` (one agent claimed the case; messages are relayed both ways). A case ends ``closed``
with its end reason (agent, customer, timeout, no_agent, after_hours, idle) and the customer is
back with the bot. Agents work from plain WhatsApp numbers (``AGENT_WHATSAPP_NUMBER``).

- ``router``: pure decisions (phrases, agent commands, codes, windows, business hours, menu).
- ``service``: the use cases over the ``repository`` port; ``repository`` has the PostgreSQL
  adapter and an in-memory fake.
- ``handlers``/``timers``: the bus consumer (inbox + outbox through ``shared.outbox``) and the
  timer and outbox-relay loops; ``app`` wires them into the service.
"""
