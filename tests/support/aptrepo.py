"""A real signed apt repository served on 127.0.0.1, with a key the test made (gpg).

`AptRepo` holds .debs in one flat directory (`deb [signed-by=KEY] URL ./`), indexes them
with dpkg-scanpackages and apt-ftparchive, and clear-signs the Release as InRelease with
its own key (or another one: a repository whose signature is wrong). The agent's apt runs
against private lists and cache (`apt_state_dir`) and this one list file, so the machine's
own apt state and sources are never touched.
"""

import functools
import http.server
import os
import shutil
import subprocess
import threading
from pathlib import Path

GPG_BATCH = ["--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]


class Key:
    """An ed25519 signing key in a GNUPGHOME of its own; `public` is its keyring file."""

    def __init__(self, where: Path, name: str) -> None:
        self.home = where / f"gnupg-{name}"
        self.home.mkdir(mode=0o700, parents=True)
        uid = f"uptend test {name} <{name}@example.invalid>"
        self._gpg("--quick-gen-key", uid, "ed25519", "sign", "never")
        self.public = where / f"{name}.gpg"
        self.public.write_bytes(self._gpg("--export").stdout)

    def _gpg(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        env = {**os.environ, "GNUPGHOME": str(self.home)}
        return subprocess.run(["gpg", *GPG_BATCH, *args], env=env, check=True, capture_output=True)

    def clearsign(self, release: Path, out: Path) -> None:
        self._gpg("--yes", "--clearsign", "-o", str(out), str(release))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class AptRepo:
    def __init__(self, where: Path, key: Key) -> None:
        self.dir = where / "repo"
        self.dir.mkdir(parents=True)
        self.key = key
        handler = functools.partial(_Quiet, directory=str(self.dir))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def add(self, deb: Path, signer: Key | None = None) -> None:
        """Put `deb` in the repository and sign its index anew (with `signer`: a wrong key)."""
        name = subprocess.run(
            ["dpkg-deb", "--show", "--showformat=${Package}_${Version}_${Architecture}", deb],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        shutil.copyfile(deb, self.dir / f"{name}.deb")
        packages = subprocess.run(
            ["dpkg-scanpackages", "--multiversion", "."],
            cwd=self.dir,
            check=True,
            capture_output=True,
        ).stdout
        (self.dir / "Packages").write_bytes(packages)
        release = subprocess.run(
            ["apt-ftparchive", "release", "."], cwd=self.dir, check=True, capture_output=True
        ).stdout
        (self.dir / "Release").write_bytes(release)
        (signer or self.key).clearsign(self.dir / "Release", self.dir / "InRelease")

    def list_file(self, sources: Path, name: str) -> Path:
        """`<sources>/<name>.list`: this repository, trusted through its key alone."""
        sources.mkdir(parents=True, exist_ok=True)
        listed = sources / f"{name}.list"
        listed.write_text(f"deb [signed-by={self.key.public}] {self.url} ./\n")
        return listed

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
