"""Deleting superseded metadata: the rule as pure functions, and a `Pruner` that applies it.

The rule (the invariant in the package docstring): a version of a role below the version the
published snapshot names was superseded when the next version was written, by the publish that
replaced it (its timestamp.json follows within milliseconds). It is deleted once that moment is
before `cutoff` (now minus the grace period): a client that read an older timestamp.json before
then has had the whole grace period to fetch what it names. Roots are never deleted (clients
walk every N.root.json), nor versions above the published one (leftovers of a killed publish:
the next publish overwrites them). Temp files of writes killed half way go once older than
`cutoff`.

A role's versions up to the published one are contiguous on disk above its lowest kept one
(each is written once and committed, or overwritten by the next publish), so deleting goes
upwards from that lowest version and stops at the first successor still too new: a publish
costs a `stat` per version it deletes (and none for a role whose next deletion is not due),
whatever the number of files in the directory.
"""

import math
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path

from tuf.api.metadata import Root

from uptend.server.tuf_repo.files import file_name, parse_file_name


def lowest(names: Iterable[str], current: Mapping[str, int]) -> dict[str, int]:
    """The lowest version on disk (at most the published one) of each role in `current`."""
    low: dict[str, int] = {}
    for name in names:
        parsed = parse_file_name(name)
        if parsed is None:
            continue
        version, role = parsed
        if role != Root.type and version <= current.get(role, 0):
            low[role] = min(low.get(role, version), version)
    return low


def next_lowest(
    low: int, current: int, written: Callable[[int], float | None], cutoff: float
) -> tuple[int, float]:
    """The lowest version to keep (those from `low` up to it may go), and when it may go.

    The second value is the cutoff from which the kept lowest version may go too: when its
    successor was written (-inf: not known yet, look again at the next prune).
    `written(v)` is the mtime of version v, or None if it is gone (another process pruned it;
    the published version itself must be there).
    """
    while low < current:
        at = written(low + 1)
        if at is None and low + 1 == current:
            break
        if at is not None and at > cutoff:
            return low, at
        low += 1
    return low, -math.inf


class Pruner:
    """Applies the rule to one metadata directory; one scan per process, then a few stats."""

    def __init__(self, metadata_dir: Path) -> None:
        self._dir = metadata_dir
        self._low: dict[str, int] | None = None
        self._due: dict[str, float] = {}  # role -> the cutoff from which its lowest may go

    def __call__(self, current: Mapping[str, int], cutoff: float) -> int:
        """Delete what the rule allows; return how many files went.

        No directory fsync: a deleted file that comes back after a power cut is merely kept.
        """
        deleted = 0
        if self._low is None:
            names = [p.name for p in self._dir.iterdir()]
            for name in names:  # write_atomically's temp files, of writes killed half way
                at = self._written(name) if name.startswith(".") else None
                if at is not None and at <= cutoff:
                    deleted += self._delete(name)
            self._low = lowest(names, current)
        for role, version in current.items():
            low = self._low.get(role, 1)  # 1: a role another process created since the scan
            if low == version or self._due.get(role, -math.inf) > cutoff:
                continue  # nothing to delete yet: no stat
            written = partial(self._version_written, role)
            keep, self._due[role] = next_lowest(low, version, written, cutoff)
            for v in range(low, keep):
                deleted += self._delete(file_name(role, v))
            self._low[role] = keep
        return deleted

    def _version_written(self, role: str, version: int) -> float | None:
        return self._written(file_name(role, version))

    def _written(self, name: str) -> float | None:
        try:
            return (self._dir / name).stat().st_mtime
        except FileNotFoundError:
            return None

    def _delete(self, name: str) -> int:
        try:
            (self._dir / name).unlink()
        except FileNotFoundError:
            return 0
        return 1
