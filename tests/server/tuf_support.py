"""Helpers for the repository tests: a static HTTP server on 127.0.0.1 and a real ngclient."""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater

from uptend.server.tuf_repo import TufRepo

CUSTOM = {"app": "demo", "version": "1.0", "channel": "stable"}


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, fmt: str, *args: Any) -> None:
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve `directory` as static files, as a CDN would; yield its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=directory))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def stage(tmp_path: Path, content: bytes, name: str = "staged") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def client(
    repo: TufRepo, url: str, cache: Path, fetcher: FetcherInterface | None = None
) -> Updater:
    """A refreshed ngclient that trusts only the repository's first root."""
    updater = updater_for(repo, url, cache, fetcher)
    updater.refresh()
    return updater


def updater_for(
    repo: TufRepo, url: str, cache: Path, fetcher: FetcherInterface | None = None
) -> Updater:
    (cache / "downloads").mkdir(parents=True, exist_ok=True)
    return Updater(
        metadata_dir=str(cache),
        metadata_base_url=f"{url}/metadata/",
        target_dir=str(cache / "downloads"),
        target_base_url=f"{url}/targets/",
        bootstrap=repo.initial_root(),
        fetcher=fetcher,
    )


def version(path: Path) -> int:
    signed: dict[str, Any] = json.loads(path.read_bytes())["signed"]
    return int(signed["version"])


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())
