"""bench/auth.py's control: `uptend server run` WITHOUT the input bounds, for the bench only.

Usage: python bench/unbounded_server.py DATA_DIR [PORT]   (PORT 0, the default, picks one)

It runs the very `uptend server run` command (same settings, migrations, listening socket,
uvicorn configuration), with two things taken out of the app it serves:

- the request body cap (`uptend.server.bodylimit.BodyLimit`, the ASGI middleware that reads
  Content-Length or counts a chunked body), removed from the app's middleware;
- the check-in's auth-first route (`_AuthFirst`, which resolves the agent before the body is
  read): the check-in then reads and parses its body first and authenticates through an
  ordinary dependency, as any FastAPI route would.

The pydantic field constraints of the check-in (lengths, character classes, at most N
reports) are part of the schema and stay: both servers validate the same way. The rate
limits are turned off by the environment (UPTEND_AUTH_FAILURES_PER_MIN=0,
UPTEND_ENROLLS_PER_MIN=0), as for any server.

There is deliberately no switch for this in uptend itself: a production server always has
its bounds. This file patches the app in its own process only.
"""

import sys
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import APIRoute

from uptend.cli import server as cli_server
from uptend.server import app as server_app
from uptend.server.api import agent as agent_api
from uptend.server.api import deps
from uptend.server.bodylimit import BodyLimit
from uptend.server.settings import Settings


def without_bounds(create_app: Callable[[Settings], FastAPI]) -> Callable[[Settings], FastAPI]:
    def create(settings: Settings) -> FastAPI:
        app = create_app(settings)
        app.user_middleware = [m for m in app.user_middleware if m.cls is not BodyLimit]
        app.dependency_overrides[agent_api._caller] = deps.agent
        return app

    return create


def main() -> None:
    data_dir = Path(sys.argv[1])
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    # Routes build their handlers when the app includes them (in create_app): from here on the
    # check-in's is FastAPI's plain one, which parses the body before its dependencies.
    setattr(agent_api._AuthFirst, "get_route_handler", APIRoute.get_route_handler)  # noqa: B010
    setattr(server_app, "create_app", without_bounds(server_app.create_app))  # noqa: B010
    cli_server.run(data_dir, port=port)


if __name__ == "__main__":
    main()
