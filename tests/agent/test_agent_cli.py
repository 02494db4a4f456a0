"""`uptend agent enroll/status/log` through the real CLI against a real server."""

import http.server
import json
import os
import threading
from pathlib import Path

from tests.support.fleet import Fleet, wait_until
from uptend.agent.attempts import KEEP, AttemptLog, attempt_logs


def test_status_and_log_show_what_the_host_runs(fleet: Fleet) -> None:
    fleet.assign("demo")
    fleet.publish("demo", "1.0")
    host = fleet.add_host("web-01")
    host.start()
    wait_until(lambda: host.running_version("demo") == "1.0", what="v1 running")
    wait_until(lambda: host.journal("demo")["phase"] == "idle", what="v1 committed")

    status = json.loads(fleet.cli("agent", "status", str(host.dir), "--json").stdout)
    assert status["name"] == "web-01"
    assert status["server"] == fleet.url + "/"
    demo = status["apps"]["demo"]
    assert (demo["current"], demo["phase"], demo["bad"]) == ("1.0", "idle", [])
    os.kill(demo["pid"], 0)  # the pid it shows is the live app

    human = fleet.cli("agent", "status", str(host.dir)).stdout
    assert "demo: 1.0 (idle, pid" in human

    log = fleet.cli("agent", "log", str(host.dir), "--app", "demo").stdout
    assert "downloading demo/1.0/demo-1.0.tar.gz" in log
    assert "installed" in log
    assert host.stop() == 0


def test_enrolling_twice_is_refused_and_keeps_the_first_credential(fleet: Fleet) -> None:
    host = fleet.add_host("web-02")
    before = (host.dir / "agent.json").read_bytes()
    again = fleet.cli(
        "agent",
        "enroll",
        str(host.dir),
        "--server",
        fleet.url,
        "--token",
        fleet.enroll_token,
        check=False,
    )
    assert again.returncode == 2
    assert "already enrolled" in again.stderr
    assert (host.dir / "agent.json").read_bytes() == before


class _ImpostorServer(http.server.BaseHTTPRequestHandler):
    """An attacker's server: accepts any token and hands out its own TUF root."""

    def do_POST(self) -> None:
        body = json.dumps(
            {
                "agent_id": "x",
                "credential": "utc_x",
                "root": '{"signed": {}}',
                "metadata_url": "http://127.0.0.1:1/tuf/metadata/",
                "targets_url": "http://127.0.0.1:1/tuf/targets/",
                "poll_interval_s": 1,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


def test_a_root_that_does_not_match_the_token_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ImpostorServer) as impostor:
        thread = threading.Thread(target=impostor.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{impostor.server_address[1]}"
        done = fleet.cli(
            "agent",
            "enroll",
            str(tmp_path / "a"),
            "--server",
            url,
            "--token",
            fleet.enroll_token,
            check=False,
        )
        impostor.shutdown()
    assert done.returncode == 5
    assert "does not match the enrollment token" in done.stderr
    assert not (tmp_path / "a" / "agent.json").exists()
    assert not (tmp_path / "a" / "state" / "trusted-root").exists()


def test_attempt_logs_keep_the_newest(tmp_path: Path) -> None:
    for i in range(KEEP + 5):
        AttemptLog(tmp_path, "demo", f"1.{i}").write("step")
    AttemptLog(tmp_path, "other", "1.0").write("step")
    kept = attempt_logs(tmp_path, "demo")
    assert len(kept) == KEEP
    assert kept[-1].name.endswith("-1.24.log")
    assert kept[0].name.endswith("-1.5.log")
    assert len(attempt_logs(tmp_path, "other")) == 1
