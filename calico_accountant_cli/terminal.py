"""Printing names that came from the network to a terminal."""

from __future__ import annotations

import re

__all__ = ["terminal_safe"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    r"""``text`` with every control character shown as ``\xNN``: names come from the
    network (a node, pod or policy name can hold an escape sequence that clears or
    rewrites the screen), and a table must print them, never obey them."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
