"""Agent labels, pure: what a label may be, and how a change reads."""

import pytest

from uptend.errors import ConfigError
from uptend.protocol.labels import MAX_LABELS, parse_change, parse_label, parse_labels


def test_a_label_is_key_equals_value() -> None:
    assert parse_label("zone=eu-1") == ("zone", "eu-1")
    assert parse_label("topology.k8s.io/zone=A_1.b") == ("topology.k8s.io/zone", "A_1.b")


@pytest.mark.parametrize(
    "text",
    ["zone", "zone=", "=eu", "-zone=eu", "zone=eu 1", "zone=eu/1", "z" * 64 + "=x", "k=" + "v" * 64,
     "zone=eu\n", "zone=ü"],
)  # fmt: skip
def test_a_bad_label_is_refused_by_name_with_the_form_it_takes(text: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_label(text)
    assert "KEY=VALUE" in e.value.hint


def test_labels_are_bounded_and_a_key_given_twice_keeps_the_last() -> None:
    assert parse_labels(["a=1", "a=2"]) == {"a": "2"}
    assert len(parse_labels([f"k{i}=v" for i in range(MAX_LABELS)])) == MAX_LABELS
    with pytest.raises(ConfigError):
        parse_labels([f"k{i}=v" for i in range(MAX_LABELS + 1)])


def test_a_change_sets_and_removes() -> None:
    assert parse_change(["zone=eu-2", "rack-", "a=b"]) == ({"zone": "eu-2", "a": "b"}, ["rack"])
    with pytest.raises(ConfigError):
        parse_change(["-"])
