"""A package as dpkg/rpm report it: fitted into the server's bounds, its drift worded."""

import re

from hypothesis import given
from hypothesis import strategies as st

from uptend.protocol import packages

FOUND = re.compile(rf"^{packages.FOUND}$")


def test_drift_says_what_differs_from_the_installed_release() -> None:
    assert packages.drift("hello", "2.0-1", "2.0-1") is None
    assert packages.drift("hello", "2.1-3", "2.0-1") == "installed by hand: 2.1-3, expected 2.0-1"
    assert (
        packages.drift("hello", None, "2.0-1") == "package hello is not installed, expected 2.0-1"
    )
    both = packages.drift("hello", "2.0-1, 2.1-3", "2.0-1")  # rpm holds two
    assert both == "installed by hand: 2.0-1, 2.1-3, expected 2.0-1"


def test_fit_keeps_what_a_package_manager_says_and_masks_the_rest() -> None:
    assert packages.fit("1:2.0-1.el9, 2.1-3") == "1:2.0-1.el9, 2.1-3"
    assert packages.fit("2.0~rc1+b1") == "2.0~rc1+b1"
    assert packages.fit("2.0\x1b[2J") == "2.0??2J"  # no escape reaches an operator's screen
    assert packages.fit("9" * 300) == "9" * packages.MAX_FOUND
    assert packages.fit("  ") == "?"


@given(st.text(max_size=400))
def test_fit_always_gives_what_the_server_takes(text: str) -> None:
    assert FOUND.match(packages.fit(text))
