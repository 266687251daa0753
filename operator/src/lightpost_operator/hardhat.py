"""Find, start and stop a Hardhat node (Hardhat 2, EDR; a third local chain for the tests).

Lookup order: ``$LIGHTPOST_HARDHAT``, then the project-local install made by ``make hardhat``
(npm package ``hardhat@2.29.1`` under ``.tools/hardhat``). Loopback only. What it serves
differently (measured on 2.29.1): no ``eth_getBlockReceipts`` nor ``debug_getRawReceipts``
(code -32004, "Method ... is not supported"); chain id 31337 and anvil's dev accounts, unlocked.
It runs only from a project that has it installed: it starts in its install directory, where an
empty config file is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from lightpost_operator.anvil import LOOPBACK, AnvilProcess, find_node_script

__all__ = ["HARDHAT_NPM_PACKAGE", "HardhatProcess", "find_hardhat"]

HARDHAT_NPM_PACKAGE = "hardhat@2.29.1"
"""The pinned npm package (Hardhat 3 needs Node >= 22; 2.29 runs on Node 20)."""

_LOCAL_BIN = Path(".tools/hardhat/node_modules/hardhat/internal/cli/bootstrap.js")
"""Where ``make hardhat`` puts the CLI, relative to the project root."""


def find_hardhat() -> str:
    """The path of Hardhat's CLI, or ChainProcessError with install steps."""
    hint = (
        f"hardhat not found: run `make hardhat` (installs {HARDHAT_NPM_PACKAGE} into "
        ".tools/hardhat), or set LIGHTPOST_HARDHAT to its internal/cli/bootstrap.js"
    )
    return find_node_script("LIGHTPOST_HARDHAT", _LOCAL_BIN, hint)


@dataclass
class HardhatProcess(AnvilProcess):
    """A running Hardhat node on loopback, automining each transaction."""

    name: ClassVar[str] = "hardhat"
    binary: str = field(default_factory=find_hardhat)

    def command(self) -> list[str]:
        project = Path(self.binary).resolve().parents[4]  # .tools/hardhat
        config = project / "hardhat.config.js"
        if not config.exists():
            config.write_text("module.exports = { solidity: '0.8.24' };\n")
        return [
            "env",
            "-C",
            str(project),
            "node",
            self.binary,
            "node",
            "--hostname",
            LOOPBACK,
            "--port",
            str(self.port),
            *self.extra_args,
        ]
