"""Text to and from the terminal, shared by the client subcommands.

Every table the CLI prints is aligned the same way, every document goes out as the same
indented JSON, and a value typed on the command line reads as JSON before falling back to
text, whichever subcommand takes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import click


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Rows under their headers in plain columns aligned with spaces."""
    lines = [list(headers)] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def table_rows(items: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[list[object]]:
    """Each API document's values for the columns, in column order."""
    return [[item.get(column) for column in columns] for item in items]


def echo_json(document: object) -> None:
    """Print an API document as indented JSON, non-ASCII text kept readable."""
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def json_or_text(value: str) -> object:
    """The value as JSON if it parses (`3.2`, `true`, `{"a": 1}`), else as the string itself."""
    try:
        return json.loads(value)
    except ValueError:
        return value
