"""`chain = NAME` in a device config: the profile fills defaults, explicit keys override it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lightpost.core.profiles import OP_STACK_TX_TYPES, chain_profile
from lightpost.errors import ConfigError
from lightpost.node.config import parse_config

INBOX = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def parse(**raw: Any) -> Any:
    raw = {
        "endpoints": ["http://127.0.0.1:8545"],
        "keystore": "k.json",
        "data_dir": "d",
        "inbox": INBOX,
        **raw,
    }
    return parse_config(raw, path=Path("/tmp/dev/device.toml"), env={})


def test_a_chain_name_is_enough() -> None:
    cfg = parse(chain="base")
    assert cfg.chain_id == 8453
    assert cfg.profile == chain_profile("base")
    assert cfg.finality_depth == 0  # base: the finalized tag


def test_a_matching_chain_id_is_accepted_and_a_contradicting_one_refused() -> None:
    assert parse(chain="sepolia", chain_id=11155111).chain_id == 11155111
    with pytest.raises(ConfigError) as err:
        parse(chain="base", chain_id=10)
    assert "`chain_id` 10 contradicts chain 'base' (chain id 8453)" in str(err.value)


def test_an_unknown_chain_lists_the_known_ones() -> None:
    known = r"unknown chain 'bsae' \(known: arbitrum, arbitrum-sepolia, base, base-sepolia, devnet"
    with pytest.raises(ConfigError, match=known):
        parse(chain="bsae")


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({}, "missing `chain`"),
        ({"chain": 8453}, "`chain` must be a chain name string"),
        ({"chain_id": "1"}, "`chain_id` must be a int"),
        ({"chain": "base", "profile": {"blocktime": 2}}, "unknown key `profile.blocktime`"),
        ({"chain": "base", "profile": {"tx_types": [0x80]}}, "profile.tx_types must be a list"),
        ({"chain": "base", "profile": {"tx_types": "0x7e"}}, "profile.tx_types must be a list"),
        ({"chain": "base", "profile": {"header_extra_fields": [1]}}, "header_extra_fields"),
        ({"chain": "base", "profile": {"logs_block_range": 0}}, "must be > 0"),
        ({"chain": "base", "profile": {"block_time_s": -1}}, "non-negative number"),
        ({"chain": "base", "profile": []}, "[profile] must be a table"),
    ],
)
def test_bad_chain_keys_are_one_line(raw: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(**raw)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_explicit_keys_override_the_profile() -> None:
    cfg = parse(
        chain="optimism",
        finality_depth=30,
        profile={
            "block_time_s": 1,
            "logs_block_range": 500,
            "tx_types": [0x7F],
            "header_extra_fields": ["fooRoot"],
        },
    )
    assert cfg.finality_depth == 30
    assert cfg.profile.block_time_s == 1.0
    assert cfg.profile.logs_block_range == 500
    assert cfg.profile.tx_types == OP_STACK_TX_TYPES | {0x7F}
    assert cfg.profile.header_extra_fields == {"fooRoot"}
    assert cfg.profile.chain_id == 10


def test_a_bare_chain_id_picks_its_built_in_profile_or_a_generic_one() -> None:
    assert parse(chain_id=42161).profile == chain_profile("arbitrum")
    generic = parse(chain_id=777).profile
    assert (generic.chain_id, generic.family, generic.header_extra_fields) == (
        777,
        "ethereum",
        frozenset(),
    )


@pytest.mark.parametrize(
    ("chain", "tx_types", "header_fields"),
    [
        ("mainnet", frozenset(), frozenset()),
        ("devnet", frozenset(), frozenset()),
        ("base", frozenset({0x7E}), frozenset()),
        ("optimism", frozenset({0x7E}), frozenset()),
        (
            "arbitrum",
            frozenset({0x64, 0x65, 0x66, 0x68, 0x69, 0x6A}),  # 0x78: never provable (core.l2)
            frozenset({"l1BlockNumber", "sendCount", "sendRoot"}),
        ),
    ],
)
def test_the_chain_profile_sets_the_block_format_the_node_proves_with(
    chain: str, tx_types: frozenset[int], header_fields: frozenset[str]
) -> None:
    from lightpost.node.runtime import build_chain, chain_format

    cfg = parse(chain=chain)
    fmt = chain_format(cfg)
    assert (fmt.tx_types, fmt.header_fields) == (tx_types, header_fields)
    built = build_chain(cfg)
    try:
        assert built.block_format == fmt
    finally:
        built.close()


def test_the_profile_sets_the_receivers_log_page(tmp_path: Path) -> None:
    """eth_getLogs is asked in pages of the profile's logs_block_range (an RPC's range cap)."""
    from dataclasses import replace

    from lightpost.core.levels import Level
    from lightpost.node.receiver import Receiver
    from tests.core.test_verify import OTHER, Block
    from tests.node.test_receiver import ScriptedEndpoint, _config

    block = Block()
    asked: list[tuple[int, int]] = []

    def hook(method: str, params: Any, answer: Any) -> Any:
        if method == "eth_getLogs":
            asked.append((int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16)))
        return answer

    profile = replace(chain_profile("devnet"), logs_block_range=1)
    config = replace(_config(tmp_path), profile=profile)
    eps = [ScriptedEndpoint(f"rpc#{i}", block, hook) for i in range(3)]
    with Receiver(config, endpoints=eps, me=OTHER.address) as receiver:
        list(receiver.poll(Level.INCLUDED, since=0))
    head = block.header.number
    assert head >= 2  # several pages
    assert {(lo, hi) for lo, hi in asked} == {(n, n) for n in range(head + 1)}


def test_the_gas_limit_source_and_ceiling_come_from_the_profile_and_the_config() -> None:
    from lightpost.node.sender_settings import SenderSettings

    arb = SenderSettings.from_config(parse(chain="arbitrum"))
    assert (arb.gas_limit_source, arb.max_gas_limit) == ("estimate", 2**24)
    assert SenderSettings.from_config(parse(chain="base")).gas_limit_source == "local"
    over = parse(chain="base", profile={"gas_limit_source": "estimate", "max_gas_limit": 500_000})
    assert (over.profile.gas_limit_source, over.profile.max_gas_limit) == ("estimate", 500_000)


@pytest.mark.parametrize(
    ("profile", "needle"),
    [
        ({"gas_limit_source": "guess"}, "profile.gas_limit_source must be one of"),
        ({"max_gas_limit": 20_999}, "profile.max_gas_limit must be in [21000, 16777216]"),
        ({"max_gas_limit": 2**24 + 1}, "profile.max_gas_limit must be in"),
        ({"max_gas_limit": "1e6"}, "`max_gas_limit` must be a non-negative integer"),
    ],
)
def test_a_bad_gas_limit_setting_is_one_clear_line(profile: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(chain="arbitrum", profile=profile)
    assert needle in str(err.value)
