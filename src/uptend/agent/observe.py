"""A public hook to watch updates: the phases each app enters and how long each piece takes.

For benchmarks and diagnostics (bench/update.py): the driver tells an `Observer` what
happened, the observer never changes what happens. The default does nothing. Spans of a
fetch or a stage are reported from a worker thread: an observer must be thread-safe
(appending to a list is).

The spans, by name (`version` is the version being fetched, staged or switched to):

| name       | what ran                                                        | where          |
|------------|-----------------------------------------------------------------|----------------|
| `fetch`    | the whole fetch job                                             | driver         |
| `download` | HTTP into the staging file, and its fsync                       | download       |
| `verify`   | length and hashes re-read against the signed metadata          | download, kind |
| `stage`    | the whole stage job                                             | driver         |
| `unpack`   | bundle: the archive unpacked into the work directory            | kind           |
| `sync`     | bundle: the unpacked tree made durable (syncfs)                 | kind           |
| `stop`     | SIGTERM to the old process gone (across ticks, never blocking)  | driver         |
| `activate` | the installer makes the version installed (bundle: `current`)  | driver         |
| `start`    | the app's process spawned                                       | driver         |
| `journal`  | one journal write                                               | driver         |
| `cleanup`  | the clean-up job after an update                                | driver         |
"""

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Protocol

Span = Callable[[str], AbstractContextManager[None]]
"""`with span("unpack"): ...` reports how long the block took (to an observer, or nowhere)."""


class Observer(Protocol):
    def phase(self, app: str, phase: str, version: str | None) -> None:
        """The journal now holds `app` in `phase` (`version`: the target, else the current)."""

    def span(self, app: str, name: str, version: str | None, start: float, end: float) -> None:
        """One piece of work ran from `start` to `end` (`time.perf_counter()` seconds)."""


class NoObserver:
    def phase(self, app: str, phase: str, version: str | None) -> None:
        pass

    def span(self, app: str, name: str, version: str | None, start: float, end: float) -> None:
        pass


NO_OBSERVER = NoObserver()


def no_span(name: str) -> AbstractContextManager[None]:
    return nullcontext()


def spans(observer: Observer, app: str, version: str | None) -> Span:
    """A `Span` that reports each block to `observer` (`no_span` for the default)."""
    if isinstance(observer, NoObserver):
        return no_span

    @contextmanager
    def span(name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            observer.span(app, name, version, start, time.perf_counter())

    return span
