"""The report's document model (headings, text, lists, tables, figures) and its HTML page.

The page is self-contained: inline CSS and every PNG embedded as a base64 data URI, so the one
file opens anywhere, e-mailed or uploaded as a CI artifact, without its folder.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hobench.report.tables import Table, to_html


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class BulletList:
    items: tuple[str, ...]


@dataclass(frozen=True)
class FigureBlock:
    path: Path
    caption: str


Block = Heading | Paragraph | BulletList | FigureBlock | Table

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1200px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table.results { border-collapse: collapse; margin: 1.2em 0; font-size: .92em; }
table.results caption { caption-side: top; text-align: left; padding-bottom: .5em; }
table.results .note { color: #555; font-size: .92em; }
table.results th, table.results td { border: 1px solid #ccc; padding: .3em .7em; }
table.results th { background: #f0f0f0; }
table.results td:not(:first-child) { text-align: right; font-variant-numeric: tabular-nums; }
/* numbers with their intervals stay on one line; a table wider than the page scrolls */
table.results { display: block; overflow-x: auto; max-width: 100%; }
table.results td { white-space: nowrap; }
/* the summary's columns are names and sentences, not numbers */
table.results#summary td { text-align: left; }
table.results tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .92em; }
"""


def data_uri(path: Path) -> str:
    """A PNG file as a `data:image/png;base64,...` URI."""
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"data:image/png;base64,{encoded}"


def render_block(block: Block) -> str:
    """One block as an HTML fragment."""
    if isinstance(block, Heading):
        return f"<h{block.level}>{html.escape(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{html.escape(block.text)}</p>"
    if isinstance(block, BulletList):
        items = "".join(f"<li>{html.escape(item)}</li>" for item in block.items)
        return f"<ul>{items}</ul>"
    if isinstance(block, FigureBlock):
        caption = html.escape(block.caption)
        return (
            f'<figure><img src="{data_uri(block.path)}" alt="{caption}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    return to_html(block)


def render_page(title: str, blocks: Sequence[Block]) -> str:
    """A complete HTML document holding `blocks`."""
    body = "\n".join(render_block(block) for block in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )
