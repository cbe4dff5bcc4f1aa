"""Printing to a terminal: names from the network made harmless, columns measured as
the terminal draws them, and colour only where it is wanted."""

from __future__ import annotations

import enum
import os
import re
import unicodedata
from collections.abc import Mapping
from typing import TextIO

__all__ = ["Color", "ColorMode", "display_width", "pad", "terminal_safe", "use_color"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    r"""``text`` with every control character shown as ``\xNN``: names come from the
    network (a node, pod or policy name can hold an escape sequence that clears or
    rewrites the screen), and a table must print them, never obey them."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def display_width(text: str) -> int:
    """Columns a terminal uses for ``text``: East Asian wide and full-width characters
    take two, combining marks and zero-width characters none.  ``len`` would misalign a
    table holding a pod named in Japanese or with an emoji."""
    width = 0
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def pad(text: str, width: int) -> str:
    """``text`` left-aligned in ``width`` terminal columns."""
    return text + " " * max(0, width - display_width(text))


class ColorMode(enum.StrEnum):
    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


def use_color(mode: ColorMode, stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """``auto``: only on a terminal, and not when ``$NO_COLOR`` is set (no-color.org) or
    ``$TERM`` is ``dumb``."""
    if mode is ColorMode.ALWAYS:
        return True
    if mode is ColorMode.NEVER:
        return False
    if environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Color(enum.StrEnum):
    """SGR codes used by the outputs (applied after padding, so they never shift a column)."""

    RED = "31"
    GREEN = "32"
    YELLOW = "33"
    BLUE = "34"
    DIM = "2"
    BOLD = "1"

    def wrap(self, text: str, enabled: bool = True) -> str:
        return f"\x1b[{self.value}m{text}\x1b[0m" if enabled else text
