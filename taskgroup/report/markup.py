"""The HTML pieces ``report.html`` is made of: escaped text, tables, sections, embedded images,
and the notes for a stage that has not run or is stale. Every user string goes through
:func:`escape`; callers pass cells and headers already escaped or built from these pieces."""

from __future__ import annotations

import base64
import html
import re
from typing import Any

NUMBER = re.compile(r"^[-+−]?\d[\d.]*%?$")


def escape(value: Any) -> str:
    """``str(value)`` with ``& < > " '`` escaped."""
    return html.escape(str(value), quote=True)


def image(png: bytes, alt: str, caption: str | None = None, key: str | None = None) -> str:
    """``png`` embedded as a data URI (``data-plot=key`` names it for checks), with an optional
    caption (HTML)."""
    data = base64.b64encode(png).decode("ascii")
    name = "" if key is None else f' data-plot="{escape(key)}"'
    tag = f'<img alt="{escape(alt)}"{name} src="data:image/png;base64,{data}">'
    if caption is None:
        return tag
    return f"<figure>{tag}<figcaption>{caption}</figcaption></figure>"


def missing(command: str) -> str:
    """The note of a stage that has not run: the command that runs it."""
    return f'<p class="missing">Not run yet: <code>{escape(command)}</code></p>'


def banner(stage: str, reason: str, command: str) -> str:
    """The warning of a stale stage: which, why (HTML), and the command that refreshes it."""
    return (
        f'<div class="stale" role="alert" data-stage="{escape(stage)}"><strong>Stale '
        f"{escape(stage)}:</strong> {reason} Refresh with <code>{escape(command)}</code>.</div>"
    )


def _cell(content: str) -> str:
    numeric = NUMBER.match(re.sub(r"<[^>]+>", "", content).strip())
    return f'<td class="n">{content}</td>' if numeric else f"<td>{content}</td>"


def table(
    header: list[str],
    rows: list[list[str]],
    *,
    better: dict[int, str] | None = None,
    key: str | None = None,
) -> str:
    """A table of HTML cells; ``better[c] = "higher"``/``"lower"`` marks column ``c`` as a
    comparison whose header says which way is better (``data-better``); ``key`` names the table
    (``data-table``)."""
    better = better or {}

    def th(c: int, h: str) -> str:
        return f'<th data-better="{better[c]}">{h}</th>' if c in better else f"<th>{h}</th>"

    head = "".join(th(c, h) for c, h in enumerate(header))
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    name = "" if key is None else f' data-table="{escape(key)}"'
    return f"<table{name}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def section(key: str, title: str, content: str) -> str:
    """``<section id=key>`` with an escaped ``<h2>`` title."""
    return f'<section id="{key}"><h2>{escape(title)}</h2>{content}</section>'
