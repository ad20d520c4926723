"""How the command line reports an error: one red line on stderr, the message as plain text."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` (never read as markup: "wagate[whatsmeow]" stays whole) and return the
    exit to raise."""
    Console(stderr=True).print(
        f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True
    )
    return typer.Exit(code)
