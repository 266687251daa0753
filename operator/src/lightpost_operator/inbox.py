"""`lightpost inbox deploy | verify`: the inbox at its one address on every EVM chain.

The inbox is created by the deterministic deployment proxy (CREATE2 with a fixed salt), so its
address is a protocol constant (:data:`lightpost.core.inbox.INBOX_ADDRESS`). Where the proxy is
missing (Ganache), it is installed by its keyless pre-signed deployment transaction (same bytes
on every chain that accepts a transaction without EIP-155 replay protection). ``deploy`` is
idempotent: it reads the code at the address first. ``verify`` proves the deployed code with
``eth_getProof`` against the stateRoot of a quorum-agreed header.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from lightpost.core.hashing import keccak256
from lightpost.core.inbox import CREATE2_DEPLOYER, INBOX_ADDRESS, INBOX_SALT
from lightpost.core.keys import PrivateKey, to_checksum_address
from lightpost.core.rpcfields import parse_data
from lightpost.core.trie import check_eth_get_proof
from lightpost.errors import ChainProcessError, InsufficientFunds, NodeError, ProofError
from lightpost.node.chain import Chain, prove_in_turn
from lightpost_operator.contracts import code_matches, inbox_initcode, inbox_runtime
from lightpost_operator.wallet import send_operator_tx

__all__ = [
    "INBOX_DEPLOY_EXECUTION_GAS",
    "PROXY_DEPLOYMENT_COST_WEI",
    "PROXY_DEPLOYMENT_TX",
    "PROXY_SIGNER",
    "cmd_inbox",
    "code_at",
    "deploy_create2",
    "deploy_inbox",
    "ensure_proxy",
    "verify_inbox",
]

# Source: github.com/Arachnid/deterministic-deployment-proxy, README.md "Latest Outputs"
# (commit b3bb19c5aa8af6d9424fd66a234116a1e8adc3bf): the one-time-account deployment transaction
# (nonce 0, gas price 100 gwei, gas limit 100000, v = 27, r = s = 0x2222...), its signer, cost.
PROXY_DEPLOYMENT_TX = bytes.fromhex(
    "f8a58085174876e800830186a08080b853604580600e600039806000f350fe7fffffffffffffffffffffffff"
    "ffffffffffffffffffffffffffffffffffffffe03601600081602082378035828234f58015156039578182fd5b"
    "8082525050506014600cf31ba022222222222222222222222222222222222222222222222222222222222222"
    "22a02222222222222222222222222222222222222222222222222222222222222222"
)
"""The proxy's keyless deployment transaction (a legacy transaction without a chain id)."""

PROXY_SIGNER = bytes.fromhex("3fab184622dc19b6109349b94811493bf2a45362")
"""The address that signature recovers to (no one holds its key): it must hold the gas money."""

PROXY_DEPLOYMENT_COST_WEI = 100_000 * 100 * 10**9
"""Gas limit x gas price of the deployment transaction: what PROXY_SIGNER must hold."""

INBOX_DEPLOY_EXECUTION_GAS = 200_000
"""Execution gas of the proxy call that creates the inbox (CREATE2 32,000 + code deposit
200/byte + initcode; measured well below on anvil and Ganache)."""


def code_at(chain: Chain, address: bytes, tag: str = "latest") -> bytes:
    """The code at ``address``, quorum-agreed (a hint for deploy; verify proves it)."""
    return bytes(
        chain.agreed(
            "eth_getCode",
            ["0x" + address.hex(), tag],
            question=f"code at {to_checksum_address(address)}",
            convert=lambda v: parse_data(v, "code"),
        )
    )


def ensure_proxy(
    chain: Chain, chain_id: int, funder: PrivateKey, nonce: int, log: Callable[[str], None]
) -> int:
    """Install the deployment proxy where it is missing; returns the funder's next nonce."""
    if code_at(chain, CREATE2_DEPLOYER):
        return nonce
    if chain.nonce(PROXY_SIGNER) != 0:
        raise ChainProcessError(
            "the deterministic deployment proxy is missing and its one-time signer has already "
            "sent another transaction on this chain: it cannot be installed here"
        )
    log("installing the deterministic deployment proxy (its keyless deployment transaction)")
    # broadcast first: only a chain that takes an unprotected transaction is worth the gas money
    # (geth refuses them over RPC by default; ETH sent to PROXY_SIGNER there is lost)
    tx_hash = keccak256(PROXY_DEPLOYMENT_TX)
    result = chain.broadcast(PROXY_DEPLOYMENT_TX, tx_hash)
    errors = result.errors.values()
    unfunded = bool(errors) and all(isinstance(e, InsufficientFunds) for e in errors)
    funded = False
    if not result.ok and unfunded and chain.balance(PROXY_SIGNER) < PROXY_DEPLOYMENT_COST_WEI:
        log(f"funding its one-time signer with {PROXY_DEPLOYMENT_COST_WEI} wei")
        send_operator_tx(
            chain, chain_id, funder, nonce=nonce, to=PROXY_SIGNER, value=PROXY_DEPLOYMENT_COST_WEI
        )
        nonce, funded = nonce + 1, True
        result = chain.broadcast(PROXY_DEPLOYMENT_TX, tx_hash)
    if not result.ok:
        why = "; ".join(str(e) for e in result.errors.values())
        sent = "" if funded else "; nothing was sent"
        raise ChainProcessError(
            "the deterministic deployment proxy is missing and cannot be installed (the chain "
            f"refused its pre-EIP-155 deployment transaction: {why}){sent}; "
            f"ask the chain's operator to deploy it at {to_checksum_address(CREATE2_DEPLOYER)}"
        )
    chain.wait_receipt(tx_hash, timeout=60)
    if not code_at(chain, CREATE2_DEPLOYER):
        raise ChainProcessError("the proxy's deployment transaction was mined but left no code")
    return nonce


def deploy_inbox(
    chain: Chain,
    chain_id: int,
    funder: PrivateKey,
    *,
    nonce: int | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[bytes, bool, int]:
    """(inbox address, whether this call deployed it, the funder's next nonce). Idempotent: the
    code at INBOX_ADDRESS is read first; other code there is an error."""
    return deploy_create2(
        chain,
        chain_id,
        funder,
        name="inbox",
        salt=INBOX_SALT,
        initcode=inbox_initcode(),
        runtime=inbox_runtime(),
        address=INBOX_ADDRESS,
        nonce=nonce,
        log=log,
    )


def deploy_create2(
    chain: Chain,
    chain_id: int,
    funder: PrivateKey,
    *,
    name: str,
    salt: bytes,
    initcode: bytes,
    runtime: bytes,
    address: bytes,
    nonce: int | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[bytes, bool, int]:
    """Deploy ``initcode`` through the CREATE2 proxy with ``salt`` to ``address`` (its protocol
    constant), installing the proxy where missing. Idempotent: the code at ``address`` is read
    first; other code there is an error. Returns (address, deployed now, the next nonce)."""
    if nonce is None:
        nonce = chain.nonce(funder.address, "pending")
    code = code_at(chain, address)
    if code:
        if not code_matches(keccak256(code), runtime):
            raise ChainProcessError(
                f"other code than the {name}'s is at {to_checksum_address(address)}"
            )
        log(f"the {name} is already at {to_checksum_address(address)}")
        return address, False, nonce
    nonce = ensure_proxy(chain, chain_id, funder, nonce, log)
    log(f"deploying the {name} to {to_checksum_address(address)}")
    send_operator_tx(
        chain,
        chain_id,
        funder,
        nonce=nonce,
        to=CREATE2_DEPLOYER,
        data=salt + initcode,
        execution_gas=INBOX_DEPLOY_EXECUTION_GAS,
    )
    if not code_matches(keccak256(code_at(chain, address)), runtime):
        raise ChainProcessError(f"the {name} deployment was mined but left other code")
    return address, True, nonce + 1


def verify_inbox(
    chain: Chain, *, tag: str = "finalized", finality_depth: int = 0, address: bytes = INBOX_ADDRESS
) -> dict[str, Any]:
    """Prove the code at ``address`` (eth_getProof codeHash) against the stateRoot of the
    quorum-agreed ``finalized`` (or ``latest``) header; compare with keccak256 of the inbox's
    runtime. Each endpoint whose answer failed proof is named."""
    if tag == "finalized":
        height = chain.final_height(finality_depth)
    else:
        height = chain.tag_height("latest")
    block = chain.proven_block(height)
    problems: dict[str, str] = {}

    def blame(label: str, why: str) -> None:
        problems[label] = why

    proof = prove_in_turn(
        chain.endpoints,
        "eth_getProof",
        ["0x" + address.hex(), [], hex(height)],
        lambda a: check_eth_get_proof(block.header.state_root, a, address=address),
        blame,
    )
    if proof is None:
        why = "".join(f"; {label}: {r}" for label, r in sorted(problems.items()))
        raise ProofError("account", f"no endpoint proved the account at block {height}{why}")
    account = proof[0].account
    code_hash = keccak256(b"") if account is None else account.code_hash
    return {
        "address": to_checksum_address(address),
        "block": height,
        "block_hash": "0x" + block.hash.hex(),
        "code_hash": "0x" + code_hash.hex(),
        "expected_code_hash": "0x" + keccak256(inbox_runtime()).hex(),
        "ok": code_matches(code_hash, inbox_runtime()),
        "proven_by": proof[2],
        "problems": problems,
    }


def cmd_inbox(args: argparse.Namespace) -> int:
    """`lightpost inbox deploy|verify --config FILE`."""
    import sys

    from lightpost.node.config import load_config
    from lightpost.node.runtime import build_chain, load_key

    config = load_config(args.config)
    chain = build_chain(config)
    try:
        chain_id = chain.chain_id()
        if chain_id != config.chain_id:
            raise ChainProcessError(
                f"the endpoints serve chain id {chain_id}, the config says {config.chain_id}"
            )
        if args.inbox_cmd == "deploy":
            key = load_key(config)
            try:
                address, deployed, _ = deploy_inbox(
                    chain, chain_id, key, log=lambda m: print(f"inbox: {m}", file=sys.stderr)
                )
            except NodeError as exc:
                raise ChainProcessError(f"deployment refused: {exc}") from None
            out: dict[str, Any] = {"address": to_checksum_address(address), "deployed": deployed}
        else:
            out = verify_inbox(
                chain,
                tag="latest" if args.latest else "finalized",
                finality_depth=config.finality_depth,
                address=config.inbox or INBOX_ADDRESS,
            )
    finally:
        chain.close()
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    elif args.inbox_cmd == "deploy":
        print(f"inbox {'deployed' if out['deployed'] else 'already'} at {out['address']}")
    else:
        verdict = "verified" if out["ok"] else "WRONG CODE"
        if out["code_hash"] == "0x" + keccak256(b"").hex():
            verdict = "not deployed: run `lightpost inbox deploy`"
        print(f"inbox at {out['address']}: {verdict} at block {out['block']} ({out['proven_by']})")
    return 0 if args.inbox_cmd == "deploy" or out["ok"] else 1
