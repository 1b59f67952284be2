"""Handlers wired to fakes: a Graph client, the in-memory store and a publisher list."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from sender.circuits import Circuits
from sender.config import SenderConfig
from sender.deps import Deps
from sender.metrics import SenderMetrics
from sender.pacing import Pacers, PairLimiter
from shared.events import Event, SendMessage
from tests.fakes.sender import FakeGraphClient, FakeStore

NUMBER = "100000000000001"
TO = "+5491135722871"


@dataclass
class World:
    graph: FakeGraphClient = field(default_factory=FakeGraphClient)
    store: FakeStore = field(default_factory=FakeStore)
    published: list[Event] = field(default_factory=list)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    deps: Deps = field(init=False)

    def __post_init__(self) -> None:
        async def publish(event: Event) -> None:
            self.published.append(event)

        self.store.outbox = self.published  # results written with the log row
        self.deps = Deps(
            graph=self.graph,
            store=self.store,
            publish=publish,
            pacers=Pacers(self.store, lambda _n: 1000.0, 0.05),
            pairs=PairLimiter(45, 6.0),
            circuits=Circuits(0.2),
            metrics=SenderMetrics(self.registry),
            config=SenderConfig(
                default_number=NUMBER,
                backoff_base=0.05,
                backoff_max=1.0,
                pair_backoff_unit=0.05,
                probe_seconds=0.2,
                orphan_seconds=5.0,
                unknown_outcome_seconds=0.08,
            ),
            rng=random.Random(1),
        )

    def of(self, cls: type[Event]) -> list[Any]:
        return [e for e in self.published if isinstance(e, cls)]

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def text(body: str = "hola", **kw: Any) -> SendMessage:
    return SendMessage.model_validate(
        {"to": kw.pop("to", TO), "content": {"kind": "text", "body": body}, **kw}
    )
