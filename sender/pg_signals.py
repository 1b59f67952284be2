"""What Meta tells the sender besides statuses, in PostgreSQL (database-wide, so that every
replica acts on it and reports the same): which identifiers are one customer, customers'
marketing preferences, each template's status, category and quality, the account's standing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sender.store import OnDatabase, TemplateState, TemplateUpdate


class PgSignals(OnDatabase):
    """Customers, preferences, templates, account (part of ``PostgresStore``)."""

    async def link_customer(self, identifiers: Sequence[str]) -> str:
        async with self.pool.acquire() as conn, conn.transaction():
            # Links are rare (once per customer): one at a time keeps merges consistent.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.customer_ids'))"
            )
            rows = await conn.fetch(
                "SELECT identifier, customer FROM customer_ids WHERE identifier = ANY($1::text[])",
                list(identifiers),
            )
            known = {r["identifier"]: r["customer"] for r in rows}
            found = sorted(set(known.values()))
            chosen = known.get(identifiers[0]) or (found[0] if found else identifiers[0])
            others = [c for c in found if c != chosen]
            if others:  # two customers were one person all along: merge them
                await conn.execute(
                    "UPDATE customer_ids SET customer = $1 WHERE customer = ANY($2::text[])",
                    chosen,
                    others,
                )
            await conn.execute(
                "INSERT INTO customer_ids (identifier, customer)"
                " SELECT unnest($1::text[]), $2 ON CONFLICT (identifier) DO UPDATE"
                " SET customer = EXCLUDED.customer, linked_at = now()",
                list(dict.fromkeys([*identifiers, chosen])),
                chosen,
            )
            return chosen

    async def set_marketing(
        self, identifiers: Sequence[str], *, stopped: bool, at: datetime, source: str
    ) -> None:
        await self.pool.execute(
            """
            INSERT INTO marketing_preferences AS p (identifier, stopped, changed_at, source)
            SELECT unnest($1::text[]), $2, $3, $4
            ON CONFLICT (identifier) DO UPDATE SET stopped = EXCLUDED.stopped,
                changed_at = EXCLUDED.changed_at, source = EXCLUDED.source
                WHERE EXCLUDED.changed_at >= p.changed_at
            """,
            list(identifiers),
            stopped,
            at,
            source,
        )

    async def save_template(self, update: TemplateUpdate) -> bool:
        name, language = update.name, update.language
        if (name is None or language is None) and update.template_id is not None:
            known = await self.pool.fetchrow(
                "SELECT name, language FROM templates WHERE template_id = $1", update.template_id
            )
            if known is not None:
                name, language = known["name"], known["language"]
        if name is None or language is None:
            return False  # a template this sender never heard of by name
        await self.pool.execute(
            _SAVE_TEMPLATE,
            name,
            language,
            update.template_id,
            update.status,
            update.category,
            update.quality,
            update.next_category,
            update.next_category_at,
            update.at,
        )
        return True

    async def templates(self, now: datetime) -> list[TemplateState]:
        rows = await self.pool.fetch(
            """
            SELECT name, language, template_id, status, quality,
                CASE WHEN next_category IS NOT NULL AND next_category_at <= $1
                     THEN next_category ELSE category END AS category
            FROM templates ORDER BY name, language
            """,
            now,
        )
        return [
            TemplateState(
                name=r["name"],
                language=r["language"],
                status=r["status"],
                category=r["category"],
                quality=r["quality"],
                template_id=r["template_id"],
            )
            for r in rows
        ]

    async def set_account_state(self, waba_id: str, state: str, event: str, at: datetime) -> None:
        await self.pool.execute(
            """
            INSERT INTO account_state AS a (waba_id, state, event, changed_at)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (waba_id) DO UPDATE SET state = EXCLUDED.state, event = EXCLUDED.event,
                changed_at = EXCLUDED.changed_at WHERE EXCLUDED.changed_at >= a.changed_at
            """,
            waba_id,
            state,
            event,
            at,
        )

    async def account_states(self) -> list[str]:
        rows = await self.pool.fetch("SELECT state FROM account_state")
        return [r["state"] for r in rows]


# Each attribute keeps the latest that Meta said of it (webhooks come in any order).
_SAVE_TEMPLATE = """
INSERT INTO templates AS t (name, language, template_id, status, status_at, category,
    category_at, quality, quality_at, next_category, next_category_at)
VALUES ($1, $2, $3, $4, CASE WHEN $4::text IS NULL THEN NULL ELSE $9::timestamptz END,
    $5, CASE WHEN $5::text IS NULL THEN NULL ELSE $9::timestamptz END,
    $6, CASE WHEN $6::text IS NULL THEN NULL ELSE $9::timestamptz END, $7, $8)
ON CONFLICT (name, language) DO UPDATE SET
    template_id = COALESCE(EXCLUDED.template_id, t.template_id),
    status = CASE WHEN EXCLUDED.status IS NOT NULL
        AND (t.status_at IS NULL OR EXCLUDED.status_at >= t.status_at)
        THEN EXCLUDED.status ELSE t.status END,
    status_at = GREATEST(t.status_at, EXCLUDED.status_at),
    category = CASE WHEN EXCLUDED.category IS NOT NULL
        AND (t.category_at IS NULL OR EXCLUDED.category_at >= t.category_at)
        THEN EXCLUDED.category ELSE t.category END,
    category_at = GREATEST(t.category_at, EXCLUDED.category_at),
    quality = CASE WHEN EXCLUDED.quality IS NOT NULL
        AND (t.quality_at IS NULL OR EXCLUDED.quality_at >= t.quality_at)
        THEN EXCLUDED.quality ELSE t.quality END,
    quality_at = GREATEST(t.quality_at, EXCLUDED.quality_at),
    next_category = COALESCE(EXCLUDED.next_category, t.next_category),
    next_category_at = COALESCE(EXCLUDED.next_category_at, t.next_category_at),
    updated_at = now()
"""
