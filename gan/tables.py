"""Markdown tables, as the results files and the console print them."""

from __future__ import annotations


def markdown_table(header: list, rows: list[list], numbers_from: int | None = None) -> str:
    """The Markdown of a table: the header line, the separator line, one line per row, joined
    by newlines (no newline at the end). Cells are written with str(). Columns from index
    `numbers_from` on are right-aligned (`---:`), the others left (`---`); None: none
    right-aligned. ValueError if a row has not as many cells as the header."""
    for index, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(
                f"rows[{index}] has {len(row)} cells, the header {len(header)}: {row!r}"
            )
    separator = [
        "---" if numbers_from is None or column < numbers_from else "---:"
        for column in range(len(header))
    ]
    lines = ["| " + " | ".join(map(str, cells)) + " |" for cells in (header, separator, *rows)]
    return "\n".join(lines)
