"""The HTML-comment directives the examples runner reads, placed right above a code block:

- ``<!-- skip: next "reason" -->`` (Sybil's own): the next example is skipped with that reason;
- ``<!-- slow: next "why" -->``: the next example is marked ``slow`` (left out of the default selection);
- ``<!-- file: NAME -->``: the next ``toml`` block is written to ``NAME`` in the page's folder;
- ``<!-- invisible-code-block: LANGUAGE ... -->`` (Sybil's own): code the page runs but does not show.
"""

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
#: one directive: its name, and its arguments up to the end of the comment
DIRECTIVE = re.compile(r"<!--+\s*(?P<name>[\w-]+):?[ \t]*(?P<arguments>.*?)\s*--+>\Z", re.S)
#: Sybil's skip arguments: an action, then a Python expression that evaluates to the reason
SKIP = re.compile(r"<!--+\s*skip:?[ \t]*(?P<action>\w+)(?P<reason>[^\n]*?)\s*--+>")
QUOTED = re.compile(r"""\A\s*(["'])\s*\S.*\1\s*\Z""")


def pages() -> list[Path]:
    """Every page whose examples run: README.md and the docs site's Markdown pages."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def is_page(path: Path) -> bool:
    return path == ROOT / "README.md" or (path.suffix == ".md" and (ROOT / "docs") in path.parents)


def directives_before(text: str, start: int) -> dict[str, str]:
    """The directives in the HTML comments directly above ``start`` (only blank space between them
    and the block): name -> arguments."""
    found: dict[str, str] = {}
    head = text[:start].rstrip()
    while head.endswith("-->"):
        opening = head.rfind("<!--")
        if opening < 0:
            break
        match = DIRECTIVE.match(head[opening:])
        if match:
            found.setdefault(match["name"], match["arguments"])
        head = head[:opening].rstrip()
    return found


def skips(text: str) -> list[tuple[int, str, str]]:
    """Every skip directive that skips examples (``next`` or ``start``): (line, action, reason)."""
    return [(text.count("\n", 0, m.start()) + 1, m["action"], m["reason"].strip())
            for m in SKIP.finditer(text) if m["action"] != "end"]


def has_reason(reason: str) -> bool:
    """A skip's reason is a non-empty quoted string (Sybil evaluates it; without one it skips silently)."""
    return bool(QUOTED.match(reason))
