"""uptend.archive against real hostile archives built in tmp_path (docs/faults.md B16, B18).

Every refused unpack must leave no `dest` and nothing new anywhere under tmp_path.
"""

import io
import os
import shutil
import stat
import struct
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from uptend.archive import ArchiveInfo, detect_format, inspect, pack_dir, unpack
from uptend.errors import ConfigError, VerificationError
from uptend.protocol.targets import ArchiveFormat

ARCHIVES = [ArchiveFormat.TAR_GZ, ArchiveFormat.ZIP]  # what uptend unpacks (not .deb)

MANIFEST = b'[app]\ncommand = ["./run.sh"]\n'
MiB = 1 << 20
LIMITS = {"max_bytes": 10 * MiB, "max_files": 100}


@dataclass(frozen=True)
class E:
    """One archive entry, written the same way into a tar.gz or a zip."""

    name: str
    kind: str = "file"  # file, dir, symlink, hardlink, fifo, chr
    data: bytes = b"x"  # the content, or the link target
    mode: int = 0o644


_TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chr": tarfile.CHRTYPE,
}
_ZIP_TYPES = {
    "file": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "fifo": stat.S_IFIFO,
    "chr": stat.S_IFCHR,
}


def write_archive(path: Path, entries: list[E]) -> Path:
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as zf, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # some tests want duplicate names
            for e in entries:
                zinfo = zipfile.ZipInfo(e.name + "/" if e.kind == "dir" else e.name)
                zinfo.create_system = 3
                zinfo.external_attr = (_ZIP_TYPES[e.kind] | e.mode) << 16
                zf.writestr(zinfo, b"" if e.kind == "dir" else e.data, zipfile.ZIP_DEFLATED)
        return path
    with tarfile.open(path, "w:gz") as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type, info.mode = _TAR_TYPES[e.kind], e.mode
            if e.kind in ("symlink", "hardlink"):
                info.linkname = e.data.decode()
            if e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return path


def name_for(fmt: ArchiveFormat) -> str:
    return f"release.{fmt.value}"


def listing(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() and not p.is_symlink() else None
        for p in root.rglob("*")
    }


@pytest.fixture(params=ARCHIVES, ids=lambda f: f.name)
def fmt(request: pytest.FixtureRequest) -> ArchiveFormat:
    result: ArchiveFormat = request.param
    return result


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """A deep destination, so `../../x` would still land inside tmp_path, beside a sentinel."""
    (tmp_path / "sentinel").mkdir()
    (tmp_path / "sentinel" / "keep").write_bytes(b"keep")
    (tmp_path / "box" / "in").mkdir(parents=True)
    return tmp_path / "box" / "in" / "dest"


def assert_refused(
    archive: Path, fmt: ArchiveFormat, dest: Path, match: str, **limits: int
) -> None:
    root = dest.parents[2]
    before = listing(root)
    with pytest.raises(VerificationError, match=match):
        unpack(archive, fmt, dest, **(LIMITS | limits))
    assert not dest.exists()
    assert listing(root) == before
    with pytest.raises(ConfigError, match=match):
        inspect(archive, fmt, **(LIMITS | limits))


Attack = Callable[[Path], list[E]]
BOTH: dict[str, tuple[Attack, str]] = {
    "dotdot": (lambda t: [E("../x")], "climbs out"),
    "dotdot_deep": (lambda t: [E("a/../../x")], "climbs out"),
    "dotdot_after_link": (
        lambda t: [E("sub", "dir", mode=0o755), E("link", "symlink", b"sub"), E("link/../../x")],
        "climbs out",
    ),
    "absolute": (lambda t: [E(f"{t}/abs")], "absolute"),
    "symlink_absolute": (lambda t: [E("passwd", "symlink", b"/etc/passwd")], "symlink"),
    "symlink_escape": (lambda t: [E("sub/out", "symlink", b"../../out")], "symlink"),
    "symlink_dotdot_after_link": (
        lambda t: [E("b", "symlink", b"."), E("c", "symlink", b"b/..")],
        "symlink",
    ),
    "write_through_dot_link": (
        lambda t: [E("a", "symlink", b"."), E("a/a/x")],
        "goes through the symlink 'a'",
    ),
    "write_through_parent_link": (
        lambda t: [E("d", "dir", mode=0o755), E("d/up", "symlink", b".."), E("d/up/x")],
        "goes through the symlink 'd/up'",
    ),
    "write_through_file": (lambda t: [E("a"), E("a/b")], "goes through the file 'a'"),
    "fifo": (lambda t: [E("pipe", "fifo")], "special file"),
    "char_device": (lambda t: [E("null", "chr")], "special file"),
    "duplicate": (lambda t: [E("uptend.toml", data=MANIFEST), E("uptend.toml")], "repeats"),
    "file_over_dir": (lambda t: [E("a", "dir", mode=0o755), E("a")], "repeats"),
    "dir_twice": (lambda t: [E("a", "dir", mode=0o755), E("a", "dir", mode=0o700)], "repeats"),
}
TAR_ONLY: dict[str, tuple[Attack, str]] = {
    "hardlink": (lambda t: [E("a"), E("b", "hardlink", b"a")], "hard link"),
    "hardlink_out": (lambda t: [E("b", "hardlink", b"/etc/passwd")], "hard link"),
}
CASES = [
    pytest.param(f, attack, match, id=f"{name}-{f.name}")
    for name, (attack, match) in BOTH.items()
    for f in ARCHIVES
] + [
    pytest.param(ArchiveFormat.TAR_GZ, attack, match, id=name)
    for name, (attack, match) in TAR_ONLY.items()
]


@pytest.mark.parametrize(("archive_fmt", "attack", "match"), CASES)
def test_hostile_entry_is_refused_and_nothing_is_written(
    tmp_path: Path, dest: Path, archive_fmt: ArchiveFormat, attack: Attack, match: str
) -> None:
    entries = [E("uptend.toml", data=MANIFEST), *attack(tmp_path)]
    archive = write_archive(tmp_path / name_for(archive_fmt), entries)
    assert_refused(archive, archive_fmt, dest, match)


def test_symlinks_that_stay_inside_are_extracted(
    tmp_path: Path, dest: Path, fmt: ArchiveFormat
) -> None:
    entries = [
        E("uptend.toml", data=MANIFEST),
        E("lib/real", data=b"real"),
        E("bin/link", "symlink", b"../lib/real"),
        E("same", "symlink", b"./lib/real"),
        E("here", "symlink", b"."),
    ]
    unpack(write_archive(tmp_path / name_for(fmt), entries), fmt, dest, **LIMITS)
    assert str((dest / "bin" / "link").readlink()) == "../lib/real"
    assert (dest / "bin" / "link").read_bytes() == b"real"
    assert (dest / "same").read_bytes() == b"real"
    assert (dest / "here").resolve() == dest.resolve()


def test_round_trip_through_pack_dir_keeps_content_exec_bits_and_links(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "lib" / "empty").mkdir(parents=True)
    (src / "bin").mkdir()
    (src / "uptend.toml").write_bytes(MANIFEST)
    (src / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (src / "run.sh").chmod(0o755)
    os.utime(src / "run.sh", (1_600_000_000, 1_600_000_000))
    (src / "lib" / "data.bin").write_bytes(os.urandom(3 * MiB))
    (src / "lib" / "shared").write_bytes(b"group writable")
    (src / "lib" / "shared").chmod(0o664)
    (src / "lib" / "suid").write_bytes(b"setuid")
    (src / "lib" / "suid").chmod(0o4755)
    (src / "bin" / "run").symlink_to("../run.sh")
    os.link(src / "lib" / "shared", src / "lib" / "hardlinked")  # stored as a copy

    packed = tmp_path / "demo-1.0.tar.gz"
    pack_dir(src, packed)
    dest = tmp_path / "dest"
    unpack(packed, ArchiveFormat.TAR_GZ, dest, **LIMITS)

    assert listing(dest) == listing(src)
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o755
    assert (dest / "run.sh").stat().st_mtime == 1_600_000_000
    assert stat.S_IMODE((dest / "lib" / "shared").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "lib" / "suid").stat().st_mode) == 0o755
    assert str((dest / "bin" / "run").readlink()) == "../run.sh"
    assert (dest / "lib" / "empty").is_dir()

    info = inspect(packed, ArchiveFormat.TAR_GZ, **LIMITS)
    files = [p for p in src.rglob("*") if p.is_file() and not p.is_symlink()]
    assert info == ArchiveInfo(
        manifest=MANIFEST,
        unpacked_size=sum(p.stat().st_size for p in files),
        files=len(list(src.rglob("*"))),
    )


def test_pack_dir_is_reproducible_and_drops_owners(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "b").mkdir(parents=True)
    (src / "uptend.toml").write_bytes(MANIFEST)
    (src / "b" / "z").write_bytes(b"z")
    (src / "a").write_bytes(b"a")
    pack_dir(src, tmp_path / "one.tar.gz")
    pack_dir(src, tmp_path / "two.tar.gz")
    assert (tmp_path / "one.tar.gz").read_bytes() == (tmp_path / "two.tar.gz").read_bytes()
    with tarfile.open(tmp_path / "one.tar.gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["a", "b", "b/z", "uptend.toml"]
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.tar.gz", "src", "two.tar.gz"]


def test_pack_dir_refuses_special_files_and_leaves_no_temp_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "pipe")
    with pytest.raises(ConfigError, match="special file"):
        pack_dir(src, tmp_path / "out.tar.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    with pytest.raises(ConfigError, match="inside"):
        pack_dir(src, src / "out.tar.gz")
    with pytest.raises(ConfigError, match="not a directory"):
        pack_dir(tmp_path / "missing", tmp_path / "out.tar.gz")


def test_modes_keep_owner_bits_and_lose_special_and_write_bits(
    tmp_path: Path, fmt: ArchiveFormat
) -> None:
    entries = [
        E("uptend.toml", data=MANIFEST, mode=0o600),
        E("tool", mode=0o6777),
        E("sticky", mode=0o1744),
        E("locked", "dir", mode=0o500),
        E("locked/inside", mode=0o400),
        E("open", "dir", mode=0o1777),
    ]
    dest = tmp_path / "dest"
    unpack(write_archive(tmp_path / name_for(fmt), entries), fmt, dest, **LIMITS)

    def mode(name: str) -> int:
        return stat.S_IMODE((dest / name).stat().st_mode)

    assert mode("uptend.toml") == 0o600
    assert mode("tool") == 0o755
    assert mode("sticky") == 0o744
    assert mode("locked") == 0o700  # the owner can always clean up
    assert mode("locked/inside") == 0o400
    assert mode("open") == 0o755
    assert mode(".") == 0o755


def test_zip_without_unix_modes_and_tar_with_dot_prefix(tmp_path: Path) -> None:
    zipped = tmp_path / "dos.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for name, data in (("uptend.toml", MANIFEST), ("dir/", b""), ("dir/f.txt", b"hello")):
            zinfo = zipfile.ZipInfo(name)
            zinfo.create_system = 0
            zf.writestr(zinfo, data)
    unpack(zipped, ArchiveFormat.ZIP, tmp_path / "z", **LIMITS)
    assert stat.S_IMODE((tmp_path / "z" / "dir" / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "z" / "dir").stat().st_mode) == 0o755

    entries = [E("./", "dir", mode=0o750), E("./uptend.toml", data=MANIFEST), E("./a/b", data=b"b")]
    dotted = write_archive(tmp_path / "dotted.tar.gz", [*entries, E("./a", "dir", mode=0o700)])
    info = inspect(dotted, ArchiveFormat.TAR_GZ, **LIMITS)
    assert info == ArchiveInfo(manifest=MANIFEST, unpacked_size=len(MANIFEST) + 1, files=4)
    unpack(dotted, ArchiveFormat.TAR_GZ, tmp_path / "t", **LIMITS)
    assert (tmp_path / "t" / "a" / "b").read_bytes() == b"b"
    assert stat.S_IMODE((tmp_path / "t").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "t" / "a").stat().st_mode) == 0o700


def test_inspect_reports_manifest_size_and_count(tmp_path: Path, fmt: ArchiveFormat) -> None:
    entries = [
        E("uptend.toml", data=MANIFEST),
        E("bin", "dir", mode=0o755),
        E("bin/run", data=b"12345", mode=0o755),
        E("run", "symlink", b"bin/run"),
    ]
    info = inspect(write_archive(tmp_path / name_for(fmt), entries), fmt, **LIMITS)
    assert info == ArchiveInfo(manifest=MANIFEST, unpacked_size=len(MANIFEST) + 5, files=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name_for(fmt)]


def test_inspect_without_a_root_manifest_is_a_config_error(
    tmp_path: Path, fmt: ArchiveFormat
) -> None:
    entries = [E("app/uptend.toml", data=MANIFEST), E("app/run.sh")]
    archive = write_archive(tmp_path / name_for(fmt), entries)
    with pytest.raises(ConfigError, match=r"release has no uptend\.toml at its root"):
        inspect(archive, fmt, **LIMITS)


def test_too_many_entries_are_refused(tmp_path: Path, dest: Path, fmt: ArchiveFormat) -> None:
    entries = [E("uptend.toml", data=MANIFEST)] + [E(f"f{i}") for i in range(4)]
    archive = write_archive(tmp_path / name_for(fmt), entries)
    assert_refused(archive, fmt, dest, "more than 4 entries", max_files=4)
    assert inspect(archive, fmt, max_bytes=MiB, max_files=5).files == 5


def write_bomb(path: Path, size: int) -> Path:
    """A highly compressible file of `size` zero bytes: a few dozen KiB on disk."""
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros", "w") as f:
            for _ in range(size // MiB):
                f.write(bytes(MiB))
    else:
        with tarfile.open(path, "w:gz") as tar:
            info = tarfile.TarInfo("zeros")
            info.size = size
            tar.addfile(info, io.BytesIO(bytes(size)))
    return path


def test_bomb_stops_at_max_bytes(
    tmp_path: Path, dest: Path, fmt: ArchiveFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = write_bomb(tmp_path / name_for(fmt), 50 * MiB)
    assert archive.stat().st_size < MiB
    written: list[int] = []
    real_rmtree = shutil.rmtree

    def measure_then_rmtree(path: Path, ignore_errors: bool = False) -> None:
        written.append(sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()))
        real_rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(shutil, "rmtree", measure_then_rmtree)
    assert_refused(archive, fmt, dest, f"more than {MiB} bytes", max_bytes=MiB)
    assert written == [MiB]  # the budget was written, the byte after it was not


def test_zip_entry_that_lies_about_its_size_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = write_bomb(tmp_path / "release.zip", 50 * MiB)
    data = bytearray(archive.read_bytes())
    struct.pack_into("<I", data, 22, 1000)  # local header: uncompressed size
    struct.pack_into("<I", data, data.rindex(b"PK\x01\x02") + 24, 1000)  # central directory
    archive.write_bytes(bytes(data))
    with zipfile.ZipFile(archive) as zf:
        assert zf.getinfo("zeros").file_size == 1000
    assert_refused(archive, ArchiveFormat.ZIP, dest, "not a readable zip", max_bytes=MiB)


def test_zip_entries_encrypted_or_oddly_compressed_are_refused(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "release.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("uptend.toml", MANIFEST)
        zf.writestr("packed", b"x" * 100, zipfile.ZIP_BZIP2)
    assert_refused(archive, ArchiveFormat.ZIP, dest, "'packed' uses compression method 12")

    write_archive(archive, [E("secret")])
    data = bytearray(archive.read_bytes())
    data[6] |= 0x1  # local header: general purpose flag "encrypted"
    data[data.rindex(b"PK\x01\x02") + 8] |= 0x1  # central directory
    archive.write_bytes(bytes(data))
    assert_refused(archive, ArchiveFormat.ZIP, dest, "'secret' is encrypted")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other_format", "empty"])
def test_corrupt_archive_is_refused(
    tmp_path: Path, dest: Path, fmt: ArchiveFormat, damage: str
) -> None:
    archive = tmp_path / name_for(fmt)
    entries = [E("uptend.toml", data=MANIFEST), E("big", data=os.urandom(MiB))]
    if damage == "garbage":
        archive.write_bytes(os.urandom(4096))
    elif damage == "truncated":
        full = write_archive(archive, entries).read_bytes()
        archive.write_bytes(full[: len(full) // 2])
    elif damage == "other_format":
        other = ".zip" if fmt is ArchiveFormat.TAR_GZ else ".tar.gz"
        write_archive(tmp_path / f"other{other}", entries).rename(archive)
    else:
        archive.write_bytes(b"")
    assert_refused(archive, fmt, dest, f"{archive.name} is not a readable {fmt.value} archive")


def test_unpack_never_touches_an_existing_dest(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "r.tar.gz", [E("uptend.toml", data=MANIFEST)])
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine").write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        unpack(archive, ArchiveFormat.TAR_GZ, dest, **LIMITS)
    assert listing(dest) == {"mine": b"mine"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("demo-1.0.tar.gz", ArchiveFormat.TAR_GZ),
        ("demo-1.0.tgz", ArchiveFormat.TAR_GZ),
        ("DEMO.ZIP", ArchiveFormat.ZIP),
    ],
)
def test_detect_format_by_suffix(name: str, expected: ArchiveFormat) -> None:
    assert detect_format(Path("/somewhere") / name) is expected


@pytest.mark.parametrize("name", ["demo.tar", "demo.tar.xz", "demo", "demo.gz"])
def test_detect_format_names_the_file_and_the_accepted_formats(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"{name} .*\.tar\.gz, \.tgz, \.zip"):
        detect_format(Path(name))
