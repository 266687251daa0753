"""Find, start and stop Ganache 7 (a second, independent local chain: EthereumJS's VM, Shanghai).

Lookup order: ``$LIGHTPOST_GANACHE``, then the project-local install made by ``make ganache``
(npm package ``ganache@7.9.2`` under ``.tools/ganache``). Loopback only. What it serves
differently from anvil (measured on 7.9.2): no ``eth_getBlockReceipts`` nor
``debug_getRawReceipts`` (their "does not exist" error carries code -32700, not -32601); the
``finalized`` and ``safe`` tags are the latest block (instant finality, as on a single-node dev
chain); no deterministic deployment proxy (:mod:`lightpost_operator.inbox` installs it); chain id
1337; a raw transaction that reaches it twice at once (a broadcast to two labels of one Ganache)
is mined twice, in two blocks, the second receipt off its block's receiptsRoot -- lightpost refuses
that block's receipts, so tests send through one label per Ganache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from lightpost_operator.anvil import LOOPBACK, AnvilProcess, find_node_script

__all__ = ["GANACHE_NPM_PACKAGE", "GanacheProcess", "find_ganache"]

GANACHE_NPM_PACKAGE = "ganache@7.9.2"
"""The pinned npm package (its newest hardfork is Shanghai: PUSH0, which the inbox uses)."""

GANACHE_HARDFORK = "shanghai"
"""Ganache 7.9.2's newest fork."""

ACCOUNT_BALANCE_WEI = 10**24
"""Each given dev account starts with 1,000,000 ETH (as on the anvil devnet)."""

_LOCAL_BIN = Path(".tools/ganache/node_modules/ganache/dist/node/cli.js")
"""Where ``make ganache`` puts the CLI, relative to the project root."""

INSTALL_HINT = (
    f"ganache not found: run `make ganache` in the lightpost checkout (installs "
    f"{GANACHE_NPM_PACKAGE} into .tools/ganache), or set LIGHTPOST_GANACHE to its cli.js"
)


def find_ganache() -> str:
    """The path of Ganache's CLI, or ChainProcessError with install steps."""
    return find_node_script("LIGHTPOST_GANACHE", _LOCAL_BIN, INSTALL_HINT)


@dataclass
class GanacheProcess(AnvilProcess):
    """A running Ganache on loopback, automining each transaction; ``accounts``: dev keys to fund
    (e.g. anvil's well-known ones, so that the same keys work on both). Its database lives under
    ``state_dir`` (its HOME), deleted by :meth:`stop` when it was a temporary one."""

    name: ClassVar[str] = "ganache"
    binary: str = field(default_factory=find_ganache)
    accounts: tuple[str, ...] = ()

    def command(self) -> list[str]:
        cmd = [
            "node",
            self.binary,
            "--server.host",
            LOOPBACK,
            "--server.port",
            str(self.port),
            "--chain.hardfork",
            GANACHE_HARDFORK,
            "--database.dbPath",
            str(self.home or ".") + "/ganache-db",  # inside its HOME, deleted with it
            "--logging.quiet",
        ]
        for key in self.accounts:
            cmd += ["--wallet.accounts", f"{key},{hex(ACCOUNT_BALANCE_WEI)}"]
        if self.block_time:
            cmd += ["--miner.blockTime", str(self.block_time)]
        return cmd + list(self.extra_args)
