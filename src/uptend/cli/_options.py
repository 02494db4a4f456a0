"""The admin commands' --server and --token options, importable without the HTTP client.

`uptend agent --help` must not load httpx, yet `agent revoke` takes these options.
"""

from typing import Annotated

import typer

ServerOpt = Annotated[
    str,
    typer.Option("--server", envvar="UPTEND_SERVER", help="server URL, e.g. http://127.0.0.1:8470"),
]
TokenOpt = Annotated[
    str, typer.Option("--token", envvar="UPTEND_TOKEN", help="an admin token (`uptend token`)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
LabelsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--label", metavar="KEY=VALUE", help="a label of this agent, e.g. zone=eu-1 (repeatable)"
    ),
]
