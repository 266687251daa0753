"""The inbox at one address on every EVM chain, on real nodes: deployed through the CREATE2
deployment proxy (installed by its keyless transaction where missing, as on Ganache), idempotent,
and proven by `inbox verify` (eth_getProof codeHash against a quorum-agreed header). The devnet
and the CLI: tests/integration/test_send_anvil.py::test_cli_send_status_and_one_line_errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.inbox import CREATE2_DEPLOYER, INBOX_ADDRESS
from lightpost.core.keys import PrivateKey
from lightpost.errors import ChainProcessError
from lightpost.node.chain import Chain
from lightpost_operator.anvil import AnvilProcess
from lightpost_operator.inbox import PROXY_SIGNER, code_at, deploy_inbox, verify_inbox
from tests.conftest import ANVIL_DEV_KEYS


def _chain(node: AnvilProcess, n: int = 1) -> Chain:
    return Chain([HttpEndpoint(node.url, f"rpc#{i}") for i in range(n)], quorum=n)


# One endpoint sends: Ganache 7.9.2 mines one signed transaction twice (two blocks, the nonce
# advanced by 2, the second receipt off its receiptsRoot) when the same raw transaction reaches it
# twice at once -- as a broadcast to two labels of one node does. Reads go to two labels.


def test_inbox_lands_at_the_protocol_address_and_is_proven(node: AnvilProcess) -> None:
    # the session's node: no other test deploys through the proxy
    chain, reads = _chain(node), _chain(node, 2)
    funder = PrivateKey.from_hex(ANVIL_DEV_KEYS[0])
    try:
        chain_id = chain.chain_id()
        # anvil 1.7.1's genesis stateRoot does not match its own eth_getProof at block 0: above it
        chain.endpoints[0].call("evm_mine", [])
        before = verify_inbox(reads, tag="latest")
        assert not before["ok"]  # nothing there yet: the proof says so
        address, deployed, _ = deploy_inbox(chain, chain_id, funder)
        assert (address, deployed) == (INBOX_ADDRESS, True)
        assert code_at(chain, CREATE2_DEPLOYER)  # anvil ships it; on Ganache it was installed
        again = deploy_inbox(chain, chain_id, funder)
        assert again[:2] == (INBOX_ADDRESS, False)  # idempotent: nothing sent
        proven = verify_inbox(reads, tag="latest")
        assert proven["ok"] and proven["code_hash"] == proven["expected_code_hash"]
        assert proven["address"].lower() == "0x" + INBOX_ADDRESS.hex()
        assert not proven["problems"]
    finally:
        chain.close()
        reads.close()


class _NoProxy:
    """An endpoint on a chain without the proxy whose one-time signer already sent a tx."""

    label = "rpc#0"

    def call(self, method: str, params: Sequence[Any]) -> Any:
        if method == "eth_getCode":
            return "0x"
        if method == "eth_getTransactionCount":
            return "0x1" if params[0] == "0x" + PROXY_SIGNER.hex() else "0x0"
        if method == "eth_chainId":
            return "0x1"
        raise AssertionError(f"unexpected {method}")

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        return [self.call(m, p) for m, p in calls]


def test_a_proxy_that_cannot_be_installed_is_a_clear_error() -> None:
    chain = Chain([_NoProxy()], quorum=1)
    try:
        with pytest.raises(ChainProcessError, match="cannot be installed here"):
            deploy_inbox(chain, 1, PrivateKey.from_hex(ANVIL_DEV_KEYS[0]), nonce=0)
    finally:
        chain.close()
