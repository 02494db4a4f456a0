"""Windows' pending-reboot rule over a registry reader (issue 13).

There is no Windows here: `FakeRegistry` stands in for winreg (a fake, named as such), so
what is tested is the rule over the three keys, not the reading of a real registry.
"""

from dataclasses import dataclass, field

import pytest

from uptend.agent.preconditions import CBS, RENAMES, SESSION, WU, windows_reboot_pending


@dataclass
class FakeRegistry:
    """A registry as a dict: key paths, and (key, value name) -> value."""

    keys: set[str] = field(default_factory=set)
    values: dict[tuple[str, str], object] = field(default_factory=dict)

    def key_exists(self, path: str) -> bool:
        return path in self.keys

    def value(self, path: str, name: str) -> object | None:
        return self.values.get((path, name))


def test_a_clean_registry_has_no_pending_reboot() -> None:
    assert windows_reboot_pending(FakeRegistry(keys={SESSION})) is None


@pytest.mark.parametrize(
    ("registry", "said"),
    [
        (FakeRegistry(keys={CBS}), "Component Based Servicing\\RebootPending"),
        (FakeRegistry(keys={WU}), "RebootRequired"),
        (FakeRegistry(values={(SESSION, RENAMES): [r"\??\C:\a.dll", "", ""]}), "1 entries"),
        (FakeRegistry(values={(SESSION, RENAMES): r"\??\C:\a.dll"}), "is set"),
    ],
)
def test_each_key_makes_a_reboot_pending(registry: FakeRegistry, said: str) -> None:
    why = windows_reboot_pending(registry)
    assert why is not None
    assert said in why


def test_an_empty_rename_list_is_not_a_pending_reboot() -> None:
    assert windows_reboot_pending(FakeRegistry(values={(SESSION, RENAMES): ["", ""]})) is None
    assert windows_reboot_pending(FakeRegistry(values={(SESSION, RENAMES): ""})) is None
