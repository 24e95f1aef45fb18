"""Reading the CLI's stderr: its progress lines (one as each step starts and ends) apart
from its error line."""

from __future__ import annotations

import re

# "<step> [what] ..." as a step starts; "<step> [what] 1.2 s" or "... failed after 1.2 s" as
# it ends (with -v, after Prefect's prefix).
PROGRESS_LINE = re.compile(
    r"^(?P<step>[a-z]+)(?: .+?)? (?:(?P<start>\.\.\.)|(?P<failed>failed after )?\d+\.\d s)$"
)


def progress_match(line: str) -> re.Match[str] | None:
    return PROGRESS_LINE.match(line.split(" - ")[-1])


def non_progress_lines(stderr: str) -> list[str]:
    """stderr's lines but the progress lines: a failed run's one error line."""
    return [line for line in stderr.strip().splitlines() if not progress_match(line)]
