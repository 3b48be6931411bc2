"""Aligned plain-text tables: every table a command prints (bench, evaluate, compare, serving, the report)
is drawn here, so they all read alike."""

from __future__ import annotations

from collections.abc import Sequence


def format_text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain aligned text table (first column left-aligned, the rest right-aligned)."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(x).ljust(w) if i == 0 else str(x).rjust(w) for i, (x, w) in enumerate(zip(cells, widths))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])
