"""The chaos run's table: one row per scenario, printed, saved, and quoted in the README."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HEADER = (
    "| scenario | sent | delivered | lost | duplicated | recovery s |",
    "|---|---:|---:|---:|---:|---:|",
)
RECOVERY_NOTE = (
    "Recovery: from the fault's end (the process started again, the connection closed, Meta's "
    "fault cleared, the server started again) until the last marker reached its phone and every "
    "service answered `/readyz` 200. Lost: markers that never arrived; duplicated: markers that "
    "arrived more than once."
)
UNAVOIDABLE_NOTE = (
    "\\* Meta accepted the send but neither its answer (the request timed out) nor any status "
    "webhook for it ever came. The sender cannot tell such a send from one Meta never received, "
    "and Meta's API has no idempotency key, so after `SENDER_UNKNOWN_OUTCOME_SECONDS` it sends "
    'again: each such send arrives twice. When the status webhooks do come (the row "Meta '
    'accepts 30% of the sends, the answer lost to the timeout" above), the sender adopts the '
    "lost answer from them and nothing is sent twice."
)


@dataclass
class Row:
    scenario: str
    sent: int
    delivered: int
    lost: int
    duplicated: int
    recovery_seconds: float
    # Measured and reported, never asserted zero (the case that cannot be helped).
    unavoidable: bool = False

    def line(self) -> str:
        duplicated = f"{self.duplicated}\\*" if self.unavoidable else str(self.duplicated)
        return (
            f"| {self.scenario} | {self.sent} | {self.delivered} | {self.lost} | "
            f"{duplicated} | {self.recovery_seconds:.1f} |"
        )


def render(rows: list[Row], leftovers: list[str], wall_seconds: float | None) -> str:
    expected = [r for r in rows if not r.unavoidable]
    separate = [r for r in rows if r.unavoidable]
    lines = [*HEADER, *(r.line() for r in expected), "", RECOVERY_NOTE]
    if separate:
        lines += ["", "Measured separately, the one case that cannot be helped:", ""]
        lines += [*HEADER, *(r.line() for r in separate), "", UNAVOIDABLE_NOTE]
    lines.append("")
    if leftovers:
        lines.append("Left behind after the run: " + "; ".join(leftovers))
    else:
        lines.append(
            "Left behind after the run: nothing (the run's RabbitMQ node and PostgreSQL cluster "
            "removed, no process of the run alive)."
        )
    if wall_seconds is not None:
        lines.append(f"Whole run: {wall_seconds:.0f} s.")
    return "\n".join(lines) + "\n"


def save(text: str, folder: Path) -> Path:
    path = folder / "chaos-table.md"
    path.write_text(text, "utf-8")
    return path
