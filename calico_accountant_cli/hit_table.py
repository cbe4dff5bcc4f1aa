"""The ``observe -o table`` form: columns sized from the data, never misaligned.

Widths are measured in terminal columns (:func:`~calico_accountant_cli.terminal.display_width`:
a wide character takes two), cells are padded before they are coloured (an escape
sequence takes no column), and the counts are right-aligned.  Rows printed all at once
are sized from all of them; a stream (``--follow``) is sized batch by batch with widths
that only grow, and the header is printed again whenever a column widened, so every
row sits under a header that fits it.
"""

from __future__ import annotations

from collections.abc import Sequence

from calico_accountant_cli.hit_format import HIT_COLUMNS, verdict_color
from calico_accountant_cli.terminal import Color, display_width, pad

__all__ = ["HitTable"]

_RIGHT = frozenset({"PACKETS", "BYTES"})
_GAP = "  "


class HitTable:
    """Renders rows of :data:`~calico_accountant_cli.hit_format.HIT_COLUMNS` cells."""

    def __init__(self, *, color: bool = False, columns: Sequence[str] = HIT_COLUMNS) -> None:
        self.columns = tuple(columns)
        self.color = color
        self.widths = [display_width(name) for name in self.columns]
        self._header_printed = False

    def render(self, rows: Sequence[Sequence[str]]) -> list[str]:
        """The lines for ``rows``: the header first when it was never printed or a column
        had to widen for these rows."""
        grew = False
        for row in rows:
            for index, cell in enumerate(row):
                width = display_width(cell)
                if width > self.widths[index]:
                    self.widths[index], grew = width, True
        lines: list[str] = []
        if not self._header_printed or (grew and rows):
            lines.append(self._line(self.columns, header=True))
            self._header_printed = True
        lines.extend(self._line(row) for row in rows)
        return lines

    def _line(self, cells: Sequence[str], *, header: bool = False) -> str:
        out: list[str] = []
        last = len(cells) - 1
        for index, (name, cell) in enumerate(zip(self.columns, cells, strict=True)):
            width = self.widths[index]
            if name in _RIGHT:
                text = " " * (width - display_width(cell)) + cell
            else:
                text = cell if index == last else pad(cell, width)
            if header:
                text = Color.BOLD.wrap(text, self.color)
            elif name == "VERDICT":
                tint = verdict_color(cell)
                if tint is not None:
                    text = tint.wrap(text, self.color)
            out.append(text)
        return _GAP.join(out).rstrip()
