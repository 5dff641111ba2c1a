"""report.html: the report's Markdown as one self-contained HTML file, its images embedded as data URIs.

    python -m orchestrator report runs/smoke      # writes runs/smoke/report/report.html beside report.md

Renders the small Markdown subset the report writes (headings, paragraphs, pipe tables, images, `code`,
**bold**, indented blocks), so both files always hold the same sections without a Markdown dependency.
An image is read from the report directory and inlined: the file can be mailed or moved on its own.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)$")
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1.5em; color: #1b1f24; line-height: 1.45; }
h1 { font-size: 1.7em; border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #d0d7de; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #d0d7de; padding: .3em .7em; text-align: left; }
th { background: #f6f8fa; }
tr:nth-child(even) td { background: #fbfcfd; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .9em; background: #f3f4f6;
       padding: .05em .3em; border-radius: 3px; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; }
figure { margin: 1em 0; }
img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
"""


def _inline(text: str) -> str:
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split(" | ")]


def _table(lines: list[str]) -> str:
    header, body = _cells(lines[0]), [_cells(line) for line in lines[2:]]
    head = "".join(f"<th>{_inline(c)}</th>" for c in header)
    rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>\n" for row in body)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}</tbody>\n</table>"


def _image(alt: str, src: str, directory: Path) -> str:
    path = directory / src
    if "/" in src or not path.is_file():  # only the report's own figures; never a path outside it
        return f"<p><em>(missing image {html.escape(src)})</em></p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}"></figure>'


def _block(block: str, directory: Path) -> str:
    lines = block.splitlines()
    if block.startswith("## "):
        return f"<h2>{_inline(block[3:])}</h2>"
    if block.startswith("# "):
        return f"<h1>{_inline(block[2:])}</h1>"
    if all(line.startswith("|") for line in lines) and len(lines) >= 2:
        return _table(lines)
    if all(line.startswith("    ") for line in lines):
        return "<pre>" + html.escape("\n".join(line[4:] for line in lines)) + "</pre>"
    found = IMAGE.match(block.strip())
    if found:
        return _image(found["alt"], found["src"], directory)
    return "<p>" + "<br>\n".join(_inline(line) for line in lines) + "</p>"


def render_html(markdown: str, directory: Path, title: str) -> str:
    """The whole page: `directory` is where the Markdown's images are (the report directory)."""
    blocks = [b for b in re.split(r"\n\s*\n", markdown.strip()) if b.strip()]
    body = "\n".join(_block(b, directory) for b in blocks)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
