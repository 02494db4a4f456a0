"""Deleting superseded metadata: a pure rule over (name, mtime), and the one scan that applies it.

The rule (the invariant in the package docstring): a version of a role below the version the
published snapshot names was superseded when the next version on disk was written, which is
the publish that replaced it (its timestamp.json follows within milliseconds). It is deleted
once that moment is before `cutoff` (now minus the grace period): a client that read an older
timestamp.json before then has had the whole grace period to fetch what it names. Roots are
never deleted (clients walk every N.root.json), nor versions above the published one (leftovers
of a killed publish: the next publish overwrites them), nor roles the snapshot does not name.
Temp files of writes killed half way go once older than `cutoff`.
"""

import itertools
import os
from collections.abc import Mapping
from pathlib import Path

from tuf.api.metadata import Root

from uptend.server.tuf_repo.files import parse_file_name


def superseded(files: Mapping[str, float], current: Mapping[str, int], cutoff: float) -> list[str]:
    """Names in `files` (name -> mtime) that may be deleted; `current` is role -> version."""
    by_role: dict[str, list[tuple[int, float, str]]] = {}
    doomed = []
    for name, mtime in files.items():
        if name.startswith("."):  # write_atomically's temp files
            if mtime <= cutoff:
                doomed.append(name)
            continue
        parsed = parse_file_name(name)
        if parsed is None:
            continue
        version, role = parsed
        if role != Root.type and role in current and version <= current[role]:
            by_role.setdefault(role, []).append((version, mtime, name))
    for versions in by_role.values():
        versions.sort()
        for (_, _, name), (_, next_written, _) in itertools.pairwise(versions):
            if next_written <= cutoff:
                doomed.append(name)
    return sorted(doomed)


def prune(metadata_dir: Path, current: Mapping[str, int], cutoff: float) -> int:
    """Delete what `superseded` allows in `metadata_dir`; return how many files went.

    No directory fsync: a deleted file that comes back after a power cut is merely kept longer.
    """
    with os.scandir(metadata_dir) as entries:
        files = {e.name: e.stat().st_mtime for e in entries if e.is_file()}
    doomed = superseded(files, current, cutoff)
    for name in doomed:
        (metadata_dir / name).unlink(missing_ok=True)
    return len(doomed)
