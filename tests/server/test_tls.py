"""`uptend server run --tls-cert --tls-key`: real TLS on 127.0.0.1, real agents, real CAs.

The certificates are made by the test (`tests/support/certs.py`): a private CA the agent is
told to trust at enrollment (`--ca-file`), and server certificates it signs. The admin CLI
trusts the CA through SSL_CERT_FILE, as httpx does. Attacks: an agent that was not given
the CA, and a certificate from the trusted CA but for another host name, are both refused
before anything is sent (no credential or token leaves the agent).
"""

import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.support.certs import CertificateAuthority, ServerCert
from tests.support.fleet import UPTEND, Fleet, Host


class TlsFleet(Fleet):
    """A Fleet whose server speaks HTTPS only, with the CLI trusting `ca`."""

    def __init__(self, root: Path, cert: ServerCert, ca: Path) -> None:
        super().__init__(root)
        self.ca = ca
        self.server_args = ["--tls-cert", str(cert.cert), "--tls-key", str(cert.key)]

    def env(self) -> dict[str, str]:
        return {**super().env(), "SSL_CERT_FILE": str(self.ca)}


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "pki")


@pytest.fixture
def tls_fleet(tmp_path: Path, ca: CertificateAuthority) -> Iterator[TlsFleet]:
    cert = ca.issue("server", ips=("127.0.0.1",), dns=("localhost",))
    fleet = TlsFleet(tmp_path / "fleet", cert, ca.pem)
    with fleet:
        yield fleet


def system_trust_only(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without the variables that would make OpenSSL trust the test CA for everyone."""
    return {k: v for k, v in env.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}


def enroll(fleet: Fleet, where: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`uptend agent enroll` on a host that trusts only the system's CAs (and `--ca-file`)."""
    argv = ["agent", "enroll", str(where), "--server", fleet.url, "--token", fleet.enroll_token]
    return subprocess.run(
        [*UPTEND, *argv, "--name", where.name, *args],
        capture_output=True,
        text=True,
        env=system_trust_only(fleet.env()),
        check=False,
    )


def no_reboot_check(host: Host) -> None:
    """As Fleet.add_host does: a pending reboot flag on the test machine is not our business."""
    cfg = json.loads((host.dir / "agent.json").read_text())
    cfg["check_reboot"] = False
    (host.dir / "agent.json").write_text(json.dumps(cfg))


def test_an_agent_enrolls_checks_in_and_updates_over_tls(
    tls_fleet: TlsFleet, ca: CertificateAuthority
) -> None:
    assert tls_fleet.url.startswith("https://127.0.0.1:")  # the first line says https
    tls_fleet.publish("demo", "1.0")  # the admin CLI over TLS, trusting the CA
    tls_fleet.assign("demo")
    where = tls_fleet.root / "tls-1"
    done = enroll(tls_fleet, where, "--ca-file", str(ca.pem))
    assert done.returncode == 0, done.stderr
    host = Host(tls_fleet, "tls-1")
    tls_fleet.hosts.append(host)
    no_reboot_check(host)
    kept = host.dir / "state" / "server-ca.pem"
    assert kept.read_bytes() == ca.pem.read_bytes()
    assert kept.stat().st_mode & 0o777 == 0o600
    config = json.loads((host.dir / "agent.json").read_text())
    assert config["metadata_url"].startswith("https://127.0.0.1:")  # TUF over TLS too

    # TUF metadata and the artifact come over urllib3 with the same trust: the update runs.
    done = subprocess.run(
        [*UPTEND, "agent", "run", str(host.dir), "--once"],
        capture_output=True,
        text=True,
        env=system_trust_only(os.environ),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert host.current("demo") == "1.0", done.stderr
    said = host.app_says("demo")  # the new code ran (the agent stopped it on exit)
    assert said is not None
    assert said["version"] == "1.0"
    agent = next(a for a in tls_fleet.agents() if a["name"] == "tls-1")
    assert agent["last_seen"] is not None  # it checked in over TLS


def test_plain_http_to_the_tls_port_gets_nothing(tls_fleet: TlsFleet) -> None:
    plain = tls_fleet.url.replace("https://", "http://")
    done = tls_fleet.cli("fleet", "list", "--server", plain, check=False)
    assert done.returncode == 6, done.stderr
    assert "Traceback" not in done.stderr


def test_an_agent_not_given_the_ca_refuses_the_server(tls_fleet: TlsFleet) -> None:
    where = tls_fleet.root / "no-ca"
    done = enroll(tls_fleet, where)
    assert done.returncode == 6, done.stderr
    assert "Traceback" not in done.stderr
    assert f"the TLS certificate of {tls_fleet.url}/ is not trusted" in done.stderr
    assert "--ca-file" in done.stderr  # the hint says how to trust a private CA
    assert not (where / "agent.json").exists()
    assert "no-ca" not in json.dumps(tls_fleet.agents())  # nothing reached the server


def test_a_cert_from_the_trusted_ca_for_another_host_is_refused(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    """A trusted CA vouches for names, not for whoever answers: the host name is checked."""
    elsewhere = ca.issue("elsewhere", dns=("elsewhere.example",))
    with TlsFleet(tmp_path / "fleet", elsewhere, ca.pem) as fleet:
        where = tmp_path / "wrong-name"
        done = enroll(fleet, where, "--ca-file", str(ca.pem))
        assert done.returncode == 6, done.stderr
        assert "is not trusted" in done.stderr
        assert "IP address mismatch" in done.stderr
        assert not (where / "agent.json").exists()


def test_a_ca_file_that_is_not_a_certificate_is_refused_before_enrolling(
    tls_fleet: TlsFleet,
) -> None:
    junk = tls_fleet.root / "junk.pem"
    junk.write_text("not a certificate\n")
    where = tls_fleet.root / "junk-ca"
    done = enroll(tls_fleet, where, "--ca-file", str(junk))
    assert done.returncode == 2, done.stderr
    assert f"cannot load the CA file {junk}" in done.stderr
    assert not where.exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--tls-cert", "/nonexistent/cert.pem"], "cannot load the TLS certificate"),
        (["--tls-key", "/nonexistent/key.pem"], "--tls-key needs --tls-cert"),
        (["--tls-cert", "{other_cert}", "--tls-key", "{key}"], "cannot load the TLS certificate"),
    ],
)
def test_tls_files_that_do_not_load_stop_the_server_before_it_listens(
    tmp_path: Path, ca: CertificateAuthority, args: list[str], words: str
) -> None:
    cert, other = ca.issue("one", ips=("127.0.0.1",)), ca.issue("two", ips=("127.0.0.1",))
    data = tmp_path / "srv"
    subprocess.run([*UPTEND, "server", "init", str(data)], check=True, capture_output=True)
    args = [a.format(other_cert=other.cert, key=cert.key) for a in args]  # a key of another
    done = subprocess.run(
        [*UPTEND, "server", "run", str(data), "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "COLUMNS"},
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""  # never said it listens
    assert "Traceback" not in done.stderr
    assert words in done.stderr
