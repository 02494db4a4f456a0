"""Placeholder: replaced by the tuf-conformance client (work in progress)."""

import typer

app = typer.Typer(help="TUF conformance client (not yet built).")
