"""A mail's body built once and written twice: as plain text and as HTML (values escaped)."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class Body:
    """Paragraphs, label/value tables, headings and line lists."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, Any]] = []

    def paragraph(self, text: str) -> Body:
        self.parts.append(("p", text))
        return self

    def table(self, rows: Sequence[tuple[str, str | None]]) -> Body:
        """Rows without a value are left out."""
        self.parts.append(("table", [(k, v) for k, v in rows if v not in (None, "")]))
        return self

    def heading(self, text: str) -> Body:
        self.parts.append(("h", text))
        return self

    def lines(self, items: Sequence[str]) -> Body:
        self.parts.append(("lines", list(items)))
        return self

    def text(self) -> str:
        out: list[str] = []
        for kind, value in self.parts:
            if kind == "p":
                out.append(value)
            elif kind == "h":
                out.append(f"{value}\n{'-' * len(value)}")
            elif kind == "table":
                out.append("\n".join(f"{k}: {v}" for k, v in value))
            else:
                out.append("\n".join(value))
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        e = html.escape
        out = [
            '<!DOCTYPE html><html lang="es"><head><meta charset="utf-8">'
            f"<title>{e(title)}</title></head>"
            '<body style="font-family: Arial, Helvetica, sans-serif; color: #222;">'
        ]
        for kind, value in self.parts:
            if kind == "p":
                out.append(f"<p>{e(value)}</p>")
            elif kind == "h":
                out.append(f"<h3>{e(value)}</h3>")
            elif kind == "table":
                rows = "".join(
                    f'<tr><th align="left" style="padding: 2px 12px 2px 0;">{e(k)}</th>'
                    f"<td>{e(v)}</td></tr>"
                    for k, v in value
                )
                out.append(f"<table>{rows}</table>")
            else:
                items = "".join(f"<li>{e(item)}</li>" for item in value)
                out.append(f"<ul>{items}</ul>")
        out.append("</body></html>")
        return "".join(out)

    def rendered(self, subject: str) -> Rendered:
        return Rendered(subject=subject[:900], text=self.text(), html=self.html(subject))


def details_json(details: Mapping[str, Any]) -> str | None:
    if not details:
        return None
    return json.dumps(details, ensure_ascii=False, sort_keys=True, default=str)[:2000]
