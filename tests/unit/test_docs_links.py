"""The README and docs/ pages: every relative link resolves, and the README stays short.

A link's target must exist, and its #anchor must be a heading of the target page under
GitHub's rule (lowercase; punctuation but hyphens and underscores dropped; spaces become
hyphens; a repeated heading gets -1, -2, ...), so that moving a section breaks a test and not
a reader's click.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

# The README's two set-up commands, exactly as a newcomer copies them.
MAIN_JOB = (
    "python3 -m venv .venv && .venv/bin/pip install -e . "
    "&& .venv/bin/taxi-duration train --year 2023 --month 1"
)
TESTS = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/pytest"

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")


def prose_lines(page: Path) -> list[str]:
    """The page's lines outside fenced code blocks (a `# comment` there is no heading)."""
    lines: list[str] = []
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in prose_lines(page):
        match = HEADING.match(line)
        if match is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    """Each relative link of the page whose file or anchor does not exist, with the reason."""
    broken: list[str] = []
    for line in prose_lines(page):
        # Code spans may hold brackets and parentheses that are no link.
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{target}: no file {file}")
            elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
                broken.append(f"{target}: no heading #{anchor} in {file.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_the_readme_is_short_and_starts_with_the_two_set_up_commands() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300
    assert MAIN_JOB in lines[:40]
    assert TESTS in lines[:40]
