"""What holds sends back, in PostgreSQL, shared by every replica: the numbers' pacing slots,
their circuits (access token, payment) and the customers' 131056 backoffs (by customer key:
``customer_of``, whichever identifier addressed them)."""

from __future__ import annotations

from sender.store import OnDatabase


class PgLimits(OnDatabase):
    """Slots, circuits, backoffs (part of :class:`sender.pg_store.PostgresStore`)."""

    async def reserve_slots(
        self, phone_number_id: str, count: int, rate: float, backdate: float
    ) -> tuple[float, float]:
        # The number's next free slot, or now - backdate when later (idle time's tokens, at
        # most backdate's worth); `count` slots from there, 1/rate apart, on this clock.
        record = await self.pool.fetchrow(
            """
            INSERT INTO pacing AS p (phone_number_id, next_slot)
            VALUES ($1, extract(epoch FROM clock_timestamp())::float8 - $4::float8
                + $2::float8 / $3::float8)
            ON CONFLICT (phone_number_id) DO UPDATE SET next_slot =
                GREATEST(p.next_slot, extract(epoch FROM clock_timestamp())::float8 - $4::float8)
                + $2::float8 / $3::float8
            RETURNING next_slot - $2::float8 / $3::float8 AS start,
                extract(epoch FROM clock_timestamp())::float8 AS now
            """,
            phone_number_id,
            float(count),
            float(rate),
            float(backdate),
        )
        assert record is not None
        return float(record["start"]), float(record["now"])

    async def open_circuit(
        self, phone_number_id: str, reason: str, kind: str = "token"
    ) -> int | None:
        incident = await self.pool.fetchval(
            """
            INSERT INTO circuits AS c (phone_number_id, kind, state, incident, reason)
            VALUES ($1, $3, 'open', 1, $2)
            ON CONFLICT (phone_number_id, kind) DO UPDATE SET state = 'open',
                incident = c.incident + 1, reason = $2, changed_at = now()
                WHERE c.state = 'closed'
            RETURNING incident
            """,
            phone_number_id,
            reason,
            kind,
        )
        return int(incident) if incident is not None else None

    async def close_circuit(self, phone_number_id: str, kind: str = "token") -> bool:
        closed = await self.pool.fetchval(
            "UPDATE circuits SET state = 'closed', changed_at = now()"
            " WHERE phone_number_id = $1 AND kind = $2 AND state = 'open' RETURNING true",
            phone_number_id,
            kind,
        )
        return bool(closed)

    async def open_circuits(self) -> list[tuple[str, str]]:
        rows = await self.pool.fetch(
            "SELECT phone_number_id, kind FROM circuits WHERE state = 'open'"
        )
        return [(r["phone_number_id"], r["kind"]) for r in rows]

    async def backoff_recipient(
        self, phone_number_id: str, recipient: str, unit: float, cap: float
    ) -> float:
        left = await self.pool.fetchval(
            """
            WITH strikes AS (
                SELECT CASE WHEN b.until > now() - make_interval(secs => $4) THEN b.strikes + 1
                       ELSE 1 END AS n
                FROM recipient_backoff b
                WHERE b.phone_number_id = $1 AND b.recipient = customer_of($2)
            )
            INSERT INTO recipient_backoff AS b (phone_number_id, recipient, until, strikes)
            VALUES ($1, customer_of($2), now() + make_interval(secs => least($4, $3)), 1)
            ON CONFLICT (phone_number_id, recipient) DO UPDATE SET
                strikes = (SELECT n FROM strikes),
                until = now() + make_interval(secs =>
                    least($4, $3 * power(4, (SELECT n FROM strikes) - 1)))
            RETURNING extract(epoch FROM until - now())::float8
            """,
            phone_number_id,
            recipient,
            float(unit),
            float(cap),
        )
        return float(left)
