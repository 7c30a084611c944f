"""Scripted chain-registry scenarios: each file under scenarios/registry_*.txt applies commands."""

from pathlib import Path

import pytest
from keychain.coordinator import registry
from keychain.coordinator.registry import Registry

from keychain.testing import datadriven
from keychain.testing.datadriven import Case, ScenarioError

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("registry_*.txt"))

BUILDERS = {
    "create": lambda c: registry.create_chain(c.arg("chain")),
    "delete": lambda c: registry.delete_chain(c.arg("chain")),
    "register": lambda c: registry.register_node(c.arg("chain"), c.arg("node"), c.arg("address")),
    "promote": lambda c: registry.promote_node(c.arg("chain"), c.arg("node")),
    "remove": lambda c: registry.remove_node(
        c.arg("chain"), c.arg("node"), int(c.args["if_epoch"]) if "if_epoch" in c.args else None
    ),
}


class RegistryRunner:
    def __init__(self) -> None:
        self.registry = Registry()

    def __call__(self, case: Case) -> str:
        if case.command in BUILDERS:
            return self._apply(BUILDERS[case.command](case))
        if case.command == "raw":
            return self._apply(case.input.encode())
        if case.command == "show":
            chains = sorted(self.registry.chains.values(), key=lambda c: c.name)
            return "\n".join(c.describe() for c in chains) or "(no chains)"
        if case.command == "snapshot-roundtrip":
            data = self.registry.snapshot()
            restored = Registry.restore(data)
            same = restored == self.registry and restored.snapshot() == data
            self.registry = restored
            return f"{data.decode()}\nrestored {'equal' if same else 'DIFFERENT'}"
        raise ScenarioError(f"{case.where}: unknown command {case.command}")

    def _apply(self, data: bytes) -> str:
        before = self.registry.snapshot()
        out = self.registry.apply(data)
        if out.error is not None:
            unchanged = self.registry.snapshot() == before
            return f"error {out.error}" + ("" if unchanged else "\nSTATE CHANGED DESPITE THE ERROR")
        assert out.chain is not None
        return ("ok " if out.changed else "unchanged ") + out.chain.describe()


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_registry_scenario(path: Path) -> None:
    datadriven.run_file(path, RegistryRunner())
