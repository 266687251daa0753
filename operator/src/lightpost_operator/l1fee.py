"""What an L2 charges for posting a transaction's data to L1, asked of every endpoint.

- OP-stack: the L1 data fee is charged in wei on top of the execution gas fee, beside the gas
  limit (docs.optimism.io transaction fees and estimates); the GasPriceOracle predeploy
  ``0x420000000000000000000000000000000000000F`` answers ``getL1Fee(bytes)`` for a signed
  transaction's bytes (optimism contracts-bedrock src/L2/GasPriceOracle.sol).
- Arbitrum: the L1 component is bought with gas: gas limit = L2 gas + L1 cost / L2 gas price;
  NodeInterface (``0xc8``, RPC only) answers ``gasEstimateL1Component(to, contractCreation, data)``
  with the L1 part in L2 gas, and eth_estimateGas includes it
  (developer.arbitrum.io/devs-how-tos/how-to-estimate-gas; NodeInterface reference).

Every figure is a claim: the value a majority of the answers reaches is taken
(core.quorum.quorum_fee: a minority can neither inflate nor deflate it), else a refusal listing
each endpoint's answer by label. A lying majority can only make a plan bigger -- the fleet's hard
total cap still holds -- or smaller (devices run dry early; nothing is lost).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from lightpost.core.batching import post_transaction
from lightpost.core.envelope import Message, channel_id, pack_messages
from lightpost.core.fees import FeeQuote
from lightpost.core.gas import estimated_gas_limit
from lightpost.core.hashing import keccak256
from lightpost.core.inbox import INBOX_ADDRESS
from lightpost.core.quorum import quorum_fee, report
from lightpost.core.rpcfields import parse_data
from lightpost.errors import ChainProcessError, DecodingError
from lightpost.node.chain import Chain, parse_quantity
from lightpost_operator.keywrite import generate_key
from lightpost_operator.wallet import sign_operator_tx

__all__ = [
    "GAS_PRICE_ORACLE",
    "L1_FEE_MULTIPLIER",
    "NODE_INTERFACE",
    "READING_BYTES",
    "agreed",
    "call_data",
    "estimated_transfer_gas",
    "l1_fee_wei",
    "sample_post",
]

GAS_PRICE_ORACLE = bytes.fromhex("420000000000000000000000000000000000000F")
"""OP-stack predeploy answering getL1Fee(bytes) (specs.optimism.io, predeploys)."""

NODE_INTERFACE = bytes.fromhex("00000000000000000000000000000000000000C8")
"""Arbitrum Nitro's RPC-only NodeInterface (docs.arbitrum.io, NodeInterface reference)."""

L1_FEE_MULTIPLIER = 2
"""An OP-stack L1 fee is planned at twice today's: it follows the L1 base fee, which moves
between planning and spending (the same allowance as core.fees.DEFAULT_BASE_FEE_MULTIPLIER)."""

READING_BYTES = 100
"""The reading fleet.GAS_PER_READING was measured with: one 100-byte reading per post (random bytes
here: incompressible, the largest L1 data)."""

_WORD = 32


def _word(value: int | bytes) -> bytes:
    return value.rjust(_WORD, b"\0") if isinstance(value, bytes) else value.to_bytes(_WORD, "big")


def call_data(signature: str, *head: int | bytes, data: bytes) -> bytes:
    """ABI call of ``signature`` with static ``head`` words then one trailing ``bytes`` argument."""
    padded = data + bytes(-len(data) % _WORD)
    offset = _WORD * (len(head) + 1)
    return (
        keccak256(signature.encode())[:4]
        + b"".join(_word(h) for h in head)
        + _word(offset)
        + _word(len(data))
        + padded
    )


def agreed(chain: Chain, method: str, params: list[Any], what: str) -> int:
    """The figure a majority of the endpoints' answers reaches, else QuorumError naming each
    endpoint's answer by label."""
    answers = chain.ask_each(method, params, lambda v: _first_word(v, what))
    value = quorum_fee([v for v in answers.values() if isinstance(v, int)], chain.quorum)
    if value is None:
        raise report(answers, chain.quorum, question=what).error()
    return value


def _first_word(answer: object, what: str) -> int:
    """An eth_call's ABI return: its first 32-byte word as an unsigned integer."""
    data = parse_data(answer, what)
    if len(data) < _WORD:
        raise DecodingError(what, f"an ABI return of {len(data)} bytes, not a 32-byte word")
    return int.from_bytes(data[:_WORD], "big")


def sample_post(*, mode: str, inbox: bytes | None, own: bytes) -> tuple[bytes, bytes]:
    """(to, calldata) of a post carrying one reading, as a device sends it."""
    reading = Message(seq=0, timestamp=0, content_type=0, payload=os.urandom(READING_BYTES))
    (post,) = pack_messages(channel_id("readings"), None, [reading], max_post_bytes=4096)
    target = (inbox or INBOX_ADDRESS) if mode == "channel" else None
    to, data, _ = post_transaction(post, inbox=target, own_address=own)
    return to or own, data


def l1_fee_wei(
    chain: Chain,
    family: str,
    *,
    chain_id: int,
    to: bytes,
    data: bytes,
    value: int,
    quote: FeeQuote,
    gas_price: int,
) -> int:
    """The L1 data fee of one such transaction in wei, agreed: OP-stack ``getL1Fee`` x
    L1_FEE_MULTIPLIER; Arbitrum the L1 component in gas x ``gas_price``; other chains 0."""
    if family == "op-stack":
        # a signed sample of the planned size, by a throwaway key (never sent)
        sample = generate_key(os.urandom)
        raw = sign_operator_tx(
            chain, chain_id, sample, nonce=1, to=to, data=data, value=value, quote=quote
        ).raw
        ask = call_data("getL1Fee(bytes)", data=raw)
        call = {"to": "0x" + GAS_PRICE_ORACLE.hex(), "data": "0x" + ask.hex()}
        return L1_FEE_MULTIPLIER * agreed(chain, "eth_call", [call, "latest"], "L1 data fee")
    if family == "arbitrum":
        ask = call_data("gasEstimateL1Component(address,bool,bytes)", to, 0, data=data)
        call = {"to": "0x" + NODE_INTERFACE.hex(), "data": "0x" + ask.hex()}
        return gas_price * agreed(chain, "eth_call", [call, "latest"], "L1 gas component")
    return 0


def estimated_transfer_gas(
    chain: Chain, *, sender: bytes, to: bytes, local: int, ceiling: int
) -> int:
    """A funding transfer's gas limit where gas buys the L1 data (core.gas.estimated_gas_limit);
    asked without a value, which needs no balance and hardly changes the data."""
    call = {"from": "0x" + sender.hex(), "to": "0x" + to.hex()}
    answers: Mapping[str, object] = chain.ask_each(
        "eth_estimateGas", [call], lambda v: parse_quantity(v, "gas estimate")
    )
    got = estimated_gas_limit(
        [v for v in answers.values() if isinstance(v, int)],
        k=chain.quorum,
        local=local,
        ceiling=ceiling,
    )
    if isinstance(got, str):
        raise ChainProcessError(f"cannot size the funding transfers: {got}")
    return got
