"""What the sender's handlers need, built by the bootstrap (``sender.bootstrap``)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from sender.circuits import Circuits
from sender.config import SenderConfig
from sender.customers import Customers
from sender.graph import GraphClient
from sender.metrics import SenderMetrics
from sender.pacing import Pacers, PairLimiter
from sender.store import SenderStore
from sender.templates import TemplateBook
from shared.events import Event, utcnow

Publish = Callable[[Event], Awaitable[None]]
Clock = Callable[[], datetime]
SERVICE = "sender"


@dataclass
class Deps:
    graph: GraphClient
    store: SenderStore
    publish: Publish  # durable once it returns (the outbox), published soon
    pacers: Pacers
    pairs: PairLimiter
    circuits: Circuits
    metrics: SenderMetrics
    config: SenderConfig
    clock: Clock = utcnow  # validity periods (and Meta's "not before") are read on it
    rng: random.Random = field(default_factory=random.Random)
    customers: Customers = field(default_factory=Customers)  # learnt customer keys
    templates: TemplateBook = field(default_factory=TemplateBook)  # Meta's template states
