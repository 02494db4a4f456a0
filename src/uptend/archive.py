"""Release archives (.tar.gz, .zip): check them, unpack them safely, pack a directory into one.

Why: a release archive comes from an operator (server, at publish time) or over the network
(agent, at install time), and tarfile/zipfile will happily write wherever an entry says
(docs/faults.md B16, B18). One walker serves both sides: the server runs it dry (`inspect`)
and the agent for real (`unpack`), so the server never signs an archive the agent would refuse.
The rules, for every entry:

- only regular files, directories and symlinks: no hard links, devices, fifos or sockets;
- no absolute path, no `..`, no entry twice, no path through an earlier symlink or file;
- a symlink is relative, its `..` come first and climb no higher than its own directory, and
  the rest only goes down, so it resolves inside the release whatever the other links are;
- at most `max_files` entries, and at most `max_bytes` bytes counted as the data streams: a
  bomb is stopped after `max_bytes + 1` bytes read, whatever the headers claim;
- files keep the owner's rwx bits but lose setuid, setgid, sticky and group/other write;
  nothing is chowned.

What it does not do: check hashes or signatures (the agent verifies the archive against TUF
first), fsync (the caller does one syncfs), parse the manifest (`uptend.protocol.manifest`),
or restore owners, zip mtimes and directory mtimes.
"""

import contextlib
import functools
import gzip
import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Generator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, NoReturn, assert_never

from uptend.errors import ConfigError, UptendError, VerificationError
from uptend.protocol.manifest import MANIFEST_NAME
from uptend.protocol.targets import ArchiveFormat

_CHUNK = 1 << 20
_MAX_MANIFEST = 1 << 20
_MAX_LINK = 4096
_SUFFIXES = dict.fromkeys((".tar.gz", ".tgz"), ArchiveFormat.TAR_GZ) | {".zip": ArchiveFormat.ZIP}
_BROKEN = (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, zlib.error, EOFError)
_CORRUPT = (*_BROKEN, UnicodeDecodeError)  # UnicodeDecodeError: a zip name flagged UTF-8
_HINT = "a release may hold only files, directories and symlinks that stay inside it"


@dataclass(frozen=True, slots=True)
class ArchiveInfo:
    """What `inspect` found: the manifest and the totals the release key signs."""

    manifest: bytes  # bytes of uptend.toml at the archive root
    unpacked_size: int  # sum of regular file sizes
    files: int  # number of entries (files + dirs + symlinks)


class _Kind(Enum):
    FILE = "file"
    DIR = "directory"
    SYMLINK = "symlink"


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    kind: _Kind
    mode: int
    mtime: int | None = None
    target: str = ""
    open: Callable[[], IO[bytes] | None] = lambda: None


def detect_format(path: Path) -> ArchiveFormat:
    """Tell the format of `path` from its name, or raise ConfigError."""
    name = path.name.lower()
    for suffix, fmt in _SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    accepted = ", ".join(_SUFFIXES)
    raise ConfigError(
        f"{path.name} is not a release archive (accepted: {accepted})",
        hint="pack the release as .tar.gz or .zip, or publish its directory",
    )


def inspect(archive: Path, fmt: ArchiveFormat, *, max_bytes: int, max_files: int) -> ArchiveInfo:
    """Check every entry as `unpack` would, without writing, and read the manifest.

    Raises:
        ConfigError: the archive is unreadable, breaks a rule or a limit, or has no manifest;
            at publish time the operator must fix it.
    """
    walker = _Walker(archive, ConfigError, None)
    walker.run(fmt, max_bytes=max_bytes, max_files=max_files)
    if walker.manifest is None:
        raise ConfigError(
            f"release has no {MANIFEST_NAME} at its root",
            hint=f"add {MANIFEST_NAME} beside the program, not inside a subdirectory",
        )
    return ArchiveInfo(walker.manifest, walker.size, walker.files)


def unpack(
    archive: Path, fmt: ArchiveFormat, dest: Path, *, max_bytes: int, max_files: int
) -> None:
    """Extract `archive` into `dest`, which must not exist; on any failure `dest` is removed.

    Raises:
        VerificationError: the archive is unreadable or breaks a rule or a limit.
        FileExistsError: `dest` exists already (it is left alone).
    """
    dest.mkdir(mode=0o700)
    try:
        _Walker(archive, VerificationError, dest).run(fmt, max_bytes=max_bytes, max_files=max_files)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def pack_dir(src: Path, dest: Path) -> None:
    """Write the contents of `src` as a reproducible .tar.gz at `dest`, atomically.

    Entries are relative to `src` and sorted; owners are dropped; symlinks stay symlinks.

    Raises:
        ConfigError: `src` is not a directory, `dest` is inside it, or it holds a special file.
    """
    if not src.is_dir():
        raise ConfigError(f"{src} is not a directory", hint="publish a directory or an archive")
    if dest.resolve().is_relative_to(src.resolve()):
        raise ConfigError(f"{dest} is inside {src}", hint="write the archive somewhere else")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with (
            tmp.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for path in sorted(src.rglob("*")):  # parents first; symlinked dirs not followed
                info = _tar_info(src, path)
                if info.isreg():
                    with path.open("rb") as data:
                        tar.addfile(info, data)
                else:
                    tar.addfile(info)
        tmp.replace(dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _tar_info(src: Path, path: Path) -> tarfile.TarInfo:
    st = path.lstat()
    info = tarfile.TarInfo(path.relative_to(src).as_posix())  # uid/gid 0, no user names
    info.mtime = int(st.st_mtime)
    info.mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)  # noqa: PTH115 - Path.readlink would normalise it
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISREG(st.st_mode):
        info.size = st.st_size  # hard-linked files go in as copies: unpack refuses hard links
    else:
        raise ConfigError(f"{path} is a special file", hint=_HINT)
    return info


class _Walker:
    """Checks entries one by one and, given a `dest`, writes them there."""

    def __init__(self, archive: Path, error: type[UptendError], dest: Path | None) -> None:
        self.archive, self.error, self.dest = archive, error, dest
        self.kinds: dict[tuple[str, ...], _Kind] = {}
        self.implicit: set[tuple[str, ...]] = set()  # parents made for an entry, not listed yet
        self.dir_modes: dict[tuple[str, ...], int] = {(): 0o755}  # applied at the end
        self.files = self.size = 0
        self.manifest: bytes | None = None

    def fail(self, name: str, problem: str) -> NoReturn:
        raise self.error(f"archive entry {name!r} {problem}", hint=_HINT)

    def run(self, fmt: ArchiveFormat, *, max_bytes: int, max_files: int) -> None:
        self.max_bytes = max_bytes
        try:
            with contextlib.closing(self.entries(fmt)) as entries:
                for entry in entries:
                    self.files += 1
                    if self.files > max_files:
                        raise self.error(f"archive has more than {max_files} entries", hint=_HINT)
                    self.add(entry)
        except _CORRUPT as e:
            raise self.error(
                f"{self.archive.name} is not a readable {fmt.value} archive: {e}",
                hint="rebuild the archive; it is truncated, corrupt or of another format",
            ) from None
        if self.dest is not None:
            for parts, mode in self.dir_modes.items():
                self.dest.joinpath(*parts).chmod(mode)

    def add(self, entry: _Entry) -> None:
        name = entry.name
        if name.startswith("/") or "\0" in name:
            self.fail(name, "has an absolute or invalid path")
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if ".." in parts:
            self.fail(name, "climbs out with '..'")
        if not parts and entry.kind is _Kind.DIR:  # "./": the release root itself
            self.dir_modes[()] = _dir_mode(entry.mode)
            return
        known = self.kinds.get(parts)
        if not parts or (
            known is not None and (parts not in self.implicit or entry.kind is not _Kind.DIR)
        ):
            self.fail(name, "has no name or repeats an earlier entry")
        self.implicit.discard(parts)
        for depth in range(1, len(parts)):
            prefix = parts[:depth]
            kind = self.kinds.setdefault(prefix, _Kind.DIR)
            if kind is not _Kind.DIR:
                self.fail(name, f"goes through the {kind.value} {'/'.join(prefix)!r}")
            if prefix not in self.dir_modes:
                self.implicit.add(prefix)
                self.dir_modes[prefix] = 0o755
                if self.dest is not None:
                    self.dest.joinpath(*prefix).mkdir(mode=0o700)
        self.kinds[parts] = entry.kind
        path = None if self.dest is None else self.dest.joinpath(*parts)
        if entry.kind is _Kind.DIR:
            self.dir_modes[parts] = _dir_mode(entry.mode)
            if path is not None and known is None:
                path.mkdir(mode=0o700)
        elif entry.kind is _Kind.SYMLINK:
            target = entry.target
            steps = [p for p in target.split("/") if p not in ("", ".")]
            ups = next((i for i, step in enumerate(steps) if step != ".."), len(steps))
            if not target or target[0] == "/" or "\0" in target or ".." in steps[ups:]:
                self.fail(name, f"is a symlink that may point outside the release ({target!r})")
            if ups >= len(parts):
                self.fail(name, f"is a symlink that points outside the release ({target!r})")
            if path is not None:
                path.symlink_to(target)
        else:
            self.write(entry, parts, path)

    def write(self, entry: _Entry, parts: tuple[str, ...], path: Path | None) -> None:
        budget = self.max_bytes - self.size
        src = entry.open()
        if src is None:
            self.fail(entry.name, "has no data")
        with src:
            if path is not None:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                with os.fdopen(os.open(path, flags, 0o600), "wb") as out:
                    done = _copy(src, out.write, budget)
                    out.flush()
                    os.fchmod(out.fileno(), entry.mode & 0o755)
                    if entry.mtime is not None:
                        os.utime(out.fileno(), (entry.mtime, entry.mtime))
            elif parts == (MANIFEST_NAME,):
                self.manifest = src.read(min(budget, _MAX_MANIFEST) + 1)
                done = len(self.manifest)
                if done > _MAX_MANIFEST:
                    self.fail(entry.name, f"is larger than {_MAX_MANIFEST} bytes")
            else:
                done = _copy(src, None, budget)
        self.size += done
        if self.size > self.max_bytes:
            raise self.error(
                f"archive unpacks to more than {self.max_bytes} bytes (at entry {entry.name!r})",
                hint="the release is larger than allowed, or the archive is a decompression bomb",
            )

    def entries(self, fmt: ArchiveFormat) -> Generator[_Entry, None, None]:
        match fmt:
            case ArchiveFormat.TAR_GZ:
                with tarfile.open(self.archive, "r:gz") as tar:
                    for member in tar:  # read in order: the gzip stream is never rewound
                        yield self.tar_entry(tar, member)
            case ArchiveFormat.ZIP:
                with zipfile.ZipFile(self.archive) as zf:
                    for info in zf.infolist():
                        yield self.zip_entry(zf, info)
            case ArchiveFormat.DEB | ArchiveFormat.RPM | ArchiveFormat.APT | ArchiveFormat.FILE:
                raise VerificationError(f"a {fmt.value} target is not unpacked as a bundle")
            case _:
                assert_never(fmt)

    def tar_entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> _Entry:
        name, mode = member.name, member.mode
        if member.islnk():
            self.fail(name, "is a hard link")
        if member.isdir():
            return _Entry(name, _Kind.DIR, mode)
        if member.issym():
            return _Entry(name, _Kind.SYMLINK, mode, target=member.linkname)
        if not member.isreg():
            self.fail(name, "is a device, fifo or other special file")
        opener = functools.partial(tar.extractfile, member)
        return _Entry(name, _Kind.FILE, mode, _mtime(member.mtime), open=opener)

    def zip_entry(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Entry:
        name = info.filename
        if info.flag_bits & 0x1:
            self.fail(name, "is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            self.fail(name, f"uses compression method {info.compress_type}, not stored or deflate")
        mode = info.external_attr >> 16 if info.create_system == 3 else 0  # 3: made on Unix
        kind = stat.S_IFMT(mode)
        if name.endswith("/") or kind == stat.S_IFDIR:
            return _Entry(name, _Kind.DIR, stat.S_IMODE(mode) or 0o755)
        if kind == stat.S_IFLNK:
            with zf.open(info) as data:
                target = data.read(_MAX_LINK + 1)
            if len(target) > _MAX_LINK:
                self.fail(name, "is a symlink with a too long target")
            return _Entry(name, _Kind.SYMLINK, 0o777, target=os.fsdecode(target))
        if kind not in (0, stat.S_IFREG):
            self.fail(name, "is a device, fifo or other special file")
        opener = functools.partial(zf.open, info)
        return _Entry(name, _Kind.FILE, stat.S_IMODE(mode) or 0o644, open=opener)


def _copy(src: IO[bytes], write: Callable[[bytes], object] | None, budget: int) -> int:
    """Copy in 1 MiB chunks; read at most `budget + 1` bytes and never write past `budget`."""
    done = 0
    while done <= budget and (chunk := src.read(min(_CHUNK, budget - done + 1))):
        done += len(chunk)
        if write is not None and done <= budget:
            write(chunk)
    return done


def _dir_mode(mode: int) -> int:
    return (mode & 0o755) | 0o700  # the agent must be able to delete old versions


def _mtime(value: float) -> int | None:
    return int(value) if 0 <= value < 2**33 else None
