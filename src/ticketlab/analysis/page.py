"""The report's index.html: one self-contained page that opens from disk anywhere.

No scripts, no styles or fonts from the network, only relative links to the PNG and CSV files
written beside it. Every string that reaches the page (run labels come from directory names,
metric names from files) goes through `html.escape`, so a run called `<script>` is shown, not run.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Optional, Sequence
from urllib.parse import quote

STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td.text, th.text { text-align: left; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #333; margin-top: 0.4em; }
p.note { color: #555; font-style: italic; }
"""


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def link(file_name: str, text: Optional[str] = None) -> str:
    """A relative link to a file written next to index.html."""
    return f'<a href="{esc(quote(file_name))}">{esc(text or file_name)}</a>'


@dataclass(frozen=True)
class Block:
    """A part of the page: a heading, an optional figure with caption, data links, table and note."""
    heading: str
    image: Optional[str] = None
    caption: str = ""
    data: Sequence[str] = ()
    table: Optional[tuple[Sequence[str], Sequence[Sequence[object]]]] = None
    note: Optional[str] = None
    paragraphs: Sequence[str] = field(default_factory=tuple)


def _cell(v: object, tag: str) -> str:
    if isinstance(v, float):
        return f"<{tag}>{esc(f'{v:.4f}')}</{tag}>"
    cls = "" if isinstance(v, int) and not isinstance(v, bool) else ' class="text"'
    return f"<{tag}{cls}>{esc(v)}</{tag}>"


def render_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f'<th class="text">{esc(h)}</th>' for h in header)
    body = "\n".join("<tr>" + "".join(_cell(v, "td") for v in row) + "</tr>" for row in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}\n</table>"


def render_block(b: Block) -> str:
    parts = [f"<h2>{esc(b.heading)}</h2>"]
    parts += [f"<p>{esc(p)}</p>" for p in b.paragraphs]
    if b.note:
        parts.append(f'<p class="note">{esc(b.note)}</p>')
    if b.image:
        data = (" Data: " + ", ".join(link(d) for d in b.data) + ".") if b.data else ""
        parts.append(f'<figure>\n<img src="{esc(quote(b.image))}" alt="{esc(b.heading)}">\n'
                     f"<figcaption>{esc(b.caption)}{data}</figcaption>\n</figure>")
    elif b.data:
        parts.append("<p>Data: " + ", ".join(link(d) for d in b.data) + ".</p>")
    if b.table is not None:
        parts.append(render_table(*b.table))
    return "\n".join(parts)


def render_page(title: str, intro: Sequence[str], blocks: Sequence[Block]) -> str:
    body = "\n".join([f"<h1>{esc(title)}</h1>", *(f"<p>{esc(p)}</p>" for p in intro),
                      *(render_block(b) for b in blocks)])
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")
