"""Benchmark: the signed repository at 100 apps and 1,000 releases (issue 8, item 6).

Usage (from the repo root):

    .venv/bin/python bench/repo.py [--apps 100] [--releases 1000] [--baseline REV]

What it does:

1. Creates a repository with `TufRepo.create` in a temp dir and publishes RELEASES releases
   round-robin over APPS apps (release k goes to app (k-1) % APPS, so releases 1..APPS each
   create an app's role) with `add_target`, as `release publish` does, timing each publish
   (wall and process CPU: the wall time is mostly fsync, noisy on a shared disk).
2. After 10, 100 and RELEASES releases: metadata bytes on disk as is (the whole burst is
   inside the grace period, so every superseded version is still kept) and as the pruning
   rule leaves it once the grace period has passed (the steady state of a server whose
   publishes are further apart).
3. Serves the directory from a counting HTTP server on 127.0.0.1 and runs a real ngclient
   `Updater` as an agent running app 0 does (refresh, then look up its newest target), and
   counts the bytes of each metadata body (and all bytes on the wire, with headers and the
   404 page of the next root's probe): a first refresh; an idle refresh; a refresh after
   a publish of an app it does not run; after a publish of its app; after a new app's
   first publish (which re-signs the top-level targets role).
4. Publishes releases 1..11 of a new app once after 10 releases (in a second repository)
   and once after RELEASES: the same per-app role size at both totals, so the total's effect
   on publish time shows apart from the app's own growing role.
5. With `--baseline REV`, runs 1 to 4 again with `src/uptend/server/tuf_repo.py` of git
   revision REV (the one-targets.json repository before per-app roles), same run.

It exits 0 whatever the figures are (a benchmark, not a test); non-zero only on errors.
"""

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from tuf.ngclient.updater import Updater

from uptend.protocol.targets import ArchiveFormat, TargetCustom, target_path
from uptend.server.tuf_repo import Expiry, TufRepo
from uptend.server.tuf_repo.files import file_name
from uptend.server.tuf_repo.prune import lowest, next_lowest

CHECKPOINTS = (10, 100)
PROBE = 11


@dataclass
class Traffic:
    """What the counting server sent: metadata bodies per file, 404s, all bytes on the wire."""

    files: list[tuple[str, int]] = field(default_factory=list)
    misses: int = 0
    wire: int = 0  # status lines, headers, bodies and 404 pages

    @property
    def body_bytes(self) -> int:
        return sum(n for _, n in self.files)


class _CountingWriter:
    def __init__(self, raw: Any, traffic: Traffic) -> None:
        self._raw = raw
        self._traffic = traffic

    def write(self, data: bytes) -> int:
        self._traffic.wire += len(data)
        return int(self._raw.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class _CountingHandler(SimpleHTTPRequestHandler):
    traffic: Traffic

    def setup(self) -> None:
        super().setup()
        self.wfile = _CountingWriter(self.wfile, self.traffic)  # type: ignore[assignment]

    def copyfile(self, source: IO[bytes], outputfile: IO[bytes]) -> None:  # type: ignore[override]
        data = source.read()
        outputfile.write(data)
        self.traffic.files.append((self.path.rsplit("/", 1)[-1], len(data)))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.traffic.misses += 1
        super().send_error(code, message, explain)

    def log_message(self, fmt: str, *args: Any) -> None:
        pass


@contextmanager
def serve(directory: Path, traffic: Traffic) -> Iterator[str]:
    handler = type("Handler", (_CountingHandler,), {"traffic": traffic})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=directory))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Result:
    label: str
    publish_wall_ms: list[float] = field(default_factory=list)
    publish_cpu_ms: list[float] = field(default_factory=list)
    disk: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # bytes, files, pruned
    refresh: dict[str, Traffic] = field(default_factory=dict)
    probe: dict[int, tuple[float, float]] = field(default_factory=dict)  # total: wall, cpu ms


def metadata_size(repo: Any, grace_s: int | None) -> tuple[int, int, int]:
    """Bytes and files of metadata now, and bytes once the grace period has passed.

    The last figure applies the pruning rule without deleting anything (the baseline, which
    never prunes, passes None), so the next checkpoint still sees a burst of publishes.
    """
    sizes = {p.name: p.stat() for p in Path(repo.metadata_dir).iterdir()}
    total = sum(s.st_size for s in sizes.values())
    if grace_s is None:
        return total, len(sizes), total
    current = repo._current().versions()  # what the published snapshot names
    cutoff = time.time() + 60  # the grace period is over for all of them
    doomed = 0
    for role, low in lowest(sizes, current).items():

        def written(v: int, role: str = role) -> float | None:
            stat = sizes.get(file_name(role, v))
            return None if stat is None else stat.st_mtime

        for v in range(low, next_lowest(low, current[role], written, cutoff)[0]):
            doomed += sizes[file_name(role, v)].st_size
    return total, len(sizes), total - doomed


def release(app: str, k: int) -> tuple[str, dict[str, Any]]:
    version = f"{k}.0"
    custom = TargetCustom(
        app=app,
        version=version,
        channel="stable",
        format=ArchiveFormat.TAR_GZ,
        unpacked_size=123_456,
        files=42,
    )
    return target_path(app, version, ArchiveFormat.TAR_GZ), custom.model_dump(mode="json")


def publish(repo: Any, work: Path, app: str, k: int, result: Result | None) -> str:
    name, custom = release(app, k)
    staged = work / "staged"
    staged.write_bytes(f"bundle {name}".encode())
    wall, cpu = time.perf_counter(), time.process_time()
    repo.add_target(name, staged, custom)
    if result is not None:
        result.publish_wall_ms.append((time.perf_counter() - wall) * 1000)
        result.publish_cpu_ms.append((time.process_time() - cpu) * 1000)
    return name


def probe(repo: Any, work: Path, first_k: int) -> tuple[float, float]:
    """Median wall and CPU ms of releases 2..PROBE of a new app: the same per-app size at any
    total, so that the total's own effect shows (release 1 also re-signs top-level targets)."""
    timed = Result("probe")
    for i in range(PROBE):
        publish(repo, work, "probe", first_k + i, timed)
    return statistics.median(timed.publish_wall_ms[1:]), statistics.median(timed.publish_cpu_ms[1:])


def run(label: str, repo_class: Any, apps: int, releases: int, grace_s: int | None) -> Result:
    result = Result(label)
    names = [f"app{i:03d}" for i in range(apps)]
    with tempfile.TemporaryDirectory(prefix="uptend-bench-repo-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        early = repo_class.create(work / "early")
        for k in range(1, CHECKPOINTS[0] + 1):
            publish(early, work, names[(k - 1) % apps], k, None)
        result.probe[CHECKPOINTS[0]] = probe(early, work, 10_000)
        repo = repo_class.create(work / "repo")
        newest: dict[str, str] = {}
        for k in range(1, releases + 1):
            app = names[(k - 1) % apps]
            newest[app] = publish(repo, work, app, k, result)
            if k in (*CHECKPOINTS, releases):
                result.disk[k] = metadata_size(repo, grace_s)
        result.probe[releases] = probe(repo, work, 20_000)
        traffic = Traffic()
        with serve(work / "repo", traffic) as url:
            cache = work / "agent"
            cache.mkdir()
            mine = names[0]

            def agent_cycle(step: str, before: Callable[[], object] = lambda: None) -> None:
                before()
                traffic.files.clear()
                traffic.misses = traffic.wire = 0
                updater = Updater(
                    str(cache),
                    f"{url}/metadata/",
                    str(cache),
                    f"{url}/targets/",
                    bootstrap=repo.initial_root(),
                )
                updater.refresh()
                if updater.get_targetinfo(newest[mine]) is None:
                    raise RuntimeError(f"the agent did not find {newest[mine]}")
                result.refresh[step] = Traffic(list(traffic.files), traffic.misses, traffic.wire)

            k = releases + 1

            def publish_other() -> None:
                publish(repo, work, names[apps // 2], k, None)

            def publish_mine() -> None:
                newest[mine] = publish(repo, work, mine, k + 1, None)

            def publish_new_app() -> None:
                publish(repo, work, "newapp", k + 2, None)

            agent_cycle("first refresh (empty cache)")
            agent_cycle("idle refresh")
            agent_cycle("after a publish of another app", publish_other)
            agent_cycle("after a publish of its app", publish_mine)
            agent_cycle("after a new app's first publish", publish_new_app)
    return result


def load_baseline(rev: str) -> Any:
    """`TufRepo` of `src/uptend/server/tuf_repo.py` at git revision `rev`, as its own module."""
    source = subprocess.run(
        ["git", "show", f"{rev}:src/uptend/server/tuf_repo.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="uptend-bench-baseline-")) / "baseline_tuf_repo.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_tuf_repo", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TufRepo


def window(values: list[float], first: int, last: int) -> float:
    """Median over releases first..last (1-based, inclusive)."""
    return statistics.median(values[first - 1 : last])


def kb(n: int) -> str:
    return f"{n / 1000:,.1f} KB" if n >= 1000 else f"{n} B"


def report(results: list[Result], apps: int, releases: int) -> None:
    print(f"\n## {apps} apps, {releases} releases round-robin (figures, not asserts)\n")
    header = "| |" + "|".join(f" {r.label} " for r in results) + "|"
    print(header)
    print("|---|" + "---|" * len(results))
    print("| **TUF bytes an agent running app000 downloads** |" + " |" * len(results))
    for step in results[0].refresh:
        cells = []
        for r in results:
            t = r.refresh[step]
            cells.append(f"{kb(t.body_bytes)} ({len(t.files)} files; wire {kb(t.wire)})")
        print(f"| {step} | " + " | ".join(cells) + " |")
    print(
        "| **metadata on disk: all in one burst / once the grace passed** |" + " |" * len(results)
    )
    for k in (*CHECKPOINTS, releases):
        cells = []
        for r in results:
            size, files, pruned = r.disk[k]
            cells.append(f"{kb(size)} ({files} files) / {kb(pruned)}")
        print(f"| after {k} releases | " + " | ".join(cells) + " |")
    print("| **publish, median wall (CPU) ms** |" + " |" * len(results))
    windows = [(1, 20), (101, 120), (491, 510), (releases - 19, releases)]
    for first, last in windows:
        if last > releases or first < 1:
            continue
        cells = [
            f"{window(r.publish_wall_ms, first, last):.1f} "
            f"({window(r.publish_cpu_ms, first, last):.1f})"
            for r in results
        ]
        print(f"| releases {first}-{last} | " + " | ".join(cells) + " |")
    if releases >= 120:
        cells = []
        for r in results:
            ratio_wall = window(r.publish_wall_ms, releases - 19, releases) / window(
                r.publish_wall_ms, 101, 120
            )
            ratio_cpu = window(r.publish_cpu_ms, releases - 19, releases) / window(
                r.publish_cpu_ms, 101, 120
            )
            cells.append(f"x{ratio_wall:.2f} (x{ratio_cpu:.2f})")
        print("| last 20 / releases 101-120 | " + " | ".join(cells) + " |")
    first, last = CHECKPOINTS[0], releases
    print(f"| **a new app's releases 2-{PROBE}, median wall (CPU) ms** |" + " |" * len(results))
    for total in (first, last):
        cells = [f"{r.probe[total][0]:.1f} ({r.probe[total][1]:.1f})" for r in results]
        print(f"| after {total} releases | " + " | ".join(cells) + " |")
    cells = [
        f"x{r.probe[last][0] / r.probe[first][0]:.2f} (x{r.probe[last][1] / r.probe[first][1]:.2f})"
        for r in results
    ]
    print(f"| after {last} / after {first} | " + " | ".join(cells) + " |")
    print("\nFiles of each agent refresh (name: bytes):")
    for r in results:
        for step, t in r.refresh.items():
            listing = ", ".join(f"{n}: {b}" for n, b in t.files)
            print(f"- {r.label}, {step}: {listing}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--apps", type=int, default=100)
    ap.add_argument("--releases", type=int, default=1000)
    ap.add_argument("--baseline", metavar="REV", help="also run tuf_repo.py of this git revision")
    args = ap.parse_args()
    grace_s = Expiry().superseded_s
    results = [run("per-app roles (this tree)", TufRepo, args.apps, args.releases, grace_s)]
    if args.baseline:
        old = load_baseline(args.baseline)
        results.append(
            run(f"one targets.json ({args.baseline})", old, args.apps, args.releases, None)
        )
    report(results, args.apps, args.releases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
