"""The install kind and the package read back, from a check-in to `fleet list`/`fleet show`.

Against one real server per dialect (SQLite and PostgreSQL), shared by the module; the
agents check in over HTTP with their own credentials, saying what an agent of a package
kind says at each check-in (its kind, the package, the version its manifest expects and the
one dpkg/rpm reports). What they say is printed literally.
"""

from typing import Any

from tests.server.test_admin_cli import wide
from tests.server.test_agent_api import admin_client, agents, app_of, check_in, enrolled, upload
from tests.support.fleet import Fleet

GROUP, DEB_APP, BUNDLE_APP, RPM_APP = "pkgs", "pkg-web", "pkg-tool", "pkg-db"


def deb(found: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "app": DEB_APP,
        "version": "2.0",
        "state": "running",
        "kind": "deb",
        "package": "uptend-pkg",
        "package_expected": "2.0-1",
        "package_version": found,
        **extra,
    }


def _shown(server: Fleet, name: str, app: str) -> dict[str, Any]:
    return app_of(server.json("fleet", "show", name)["agent"], app)


def test_fleet_list_and_show_say_the_kind_the_package_and_its_drift(server: Fleet) -> None:
    with admin_client(server) as http:
        for app in (DEB_APP, BUNDLE_APP):
            http.put(f"/api/v1/groups/{GROUP}", json={"app": app}).raise_for_status()
    upload(server, DEB_APP, "2.0")
    upload(server, BUNDLE_APP, "1.0")
    credential = enrolled(server, "pkg-host", group=GROUP)
    bundle = {"app": BUNDLE_APP, "version": "1.0", "state": "running", "kind": "bundle"}

    assert check_in(server, credential, [deb("2.0-1"), bundle]).status_code == 200
    listed = agents(server)["pkg-host"]
    web = app_of(listed, DEB_APP)
    assert web["kind"] == "deb"
    assert web["package"] == {
        "name": "uptend-pkg", "version": "2.0-1", "expected": "2.0-1", "drift": None,
    }  # fmt: skip
    assert web["reason"]["code"] == "up_to_date"
    assert (app_of(listed, BUNDLE_APP)["kind"], app_of(listed, BUNDLE_APP)["package"]) == (
        "bundle",
        None,
    )
    assert _shown(server, "pkg-host", DEB_APP)["package"] == web["package"]
    table = wide(server, "fleet", "list", "--group", GROUP)
    assert "deb uptend-pkg 2.0-1" in table
    assert " bundle " in table

    # changed by hand on the host: dpkg has 2.1-3, the release says 2.0-1
    assert check_in(server, credential, [deb("2.1-3"), bundle]).status_code == 200
    drift = "installed by hand: 2.1-3, expected 2.0-1"
    shown = _shown(server, "pkg-host", DEB_APP)
    assert (shown["package"]["version"], shown["package"]["drift"]) == ("2.1-3", drift)
    assert app_of(agents(server)["pkg-host"], DEB_APP)["package"]["drift"] == drift
    assert f"deb uptend-pkg: {drift}" in wide(server, "fleet", "show", "pkg-host")

    # removed by hand: dpkg has none of it
    assert check_in(server, credential, [deb(None), bundle]).status_code == 200
    gone = _shown(server, "pkg-host", DEB_APP)["package"]
    assert (gone["version"], gone["drift"]) == (
        None,
        "package uptend-pkg is not installed, expected 2.0-1",
    )

    # an older agent says nothing of kinds: nothing is shown (and nothing breaks)
    plain = {"app": DEB_APP, "version": "2.0", "state": "running"}
    assert check_in(server, credential, [plain]).status_code == 200
    old = _shown(server, "pkg-host", DEB_APP)
    assert (old["kind"], old["package"]) == (None, None)


def test_rpm_versions_are_kept_as_rpm_said_them(server: Fleet) -> None:
    """Two versions of one package (rpm -q says both) and an epoch: stored and shown as said."""
    with admin_client(server) as http:
        http.put(f"/api/v1/groups/{GROUP}-rpm", json={"app": RPM_APP}).raise_for_status()
    upload(server, RPM_APP, "2.0")
    credential = enrolled(server, "pkg-rpm-host", group=f"{GROUP}-rpm")
    said = deb("1:2.0-1.el9, 2.1-3", app=RPM_APP, kind="rpm", package_expected="1:2.0-1.el9")
    assert check_in(server, credential, [said]).status_code == 200
    shown = _shown(server, "pkg-rpm-host", RPM_APP)
    assert shown["kind"] == "rpm"
    assert (
        shown["package"]["drift"] == "installed by hand: 1:2.0-1.el9, 2.1-3, expected 1:2.0-1.el9"
    )
    assert "rpm uptend-pkg: installed by hand: 1:2.0-1.el9, 2.1-3" in wide(
        server, "fleet", "list", "--group", f"{GROUP}-rpm"
    )
