"""One inbox address on every EVM chain: EIP-1014 CREATE2 through the deterministic deployment
proxy with a fixed salt (lightpost.core.inbox)."""

from __future__ import annotations

import pytest

from lightpost.core.hashing import keccak256
from lightpost.core.inbox import (
    CREATE2_DEPLOYER,
    INBOX_ADDRESS,
    INBOX_CODE_HASH,
    INBOX_INITCODE_HASH,
    INBOX_SALT,
    create2_address,
)
from lightpost_operator.contracts import code_matches, inbox_initcode, inbox_runtime

# EIP-1014's own examples: (deployer, salt, init code, address)
EIP1014 = [
    ("00" * 20, "00" * 32, "00", "4d1a2e2bb4f88f0250f26ffff098b0b30b26bf38"),
    ("deadbeef" + "00" * 16, "00" * 32, "00", "b928f69bb1d91cd65274e3c79d8986362984fda3"),
    (
        "deadbeef" + "00" * 16,
        "00" * 12 + "feed" + "00" * 18,
        "00",
        "d04116cdd17bebe565eb2422f2497e06cc1c9833",
    ),
    ("00" * 20, "00" * 32, "deadbeef", "70f2b2914a2a4b783faefb75f459a580616fcb5e"),
]


@pytest.mark.parametrize(("deployer", "salt", "init", "expected"), EIP1014)
def test_create2_address_matches_eip1014(
    deployer: str, salt: str, init: str, expected: str
) -> None:
    got = create2_address(
        bytes.fromhex(deployer), bytes.fromhex(salt), keccak256(bytes.fromhex(init))
    )
    assert got.hex() == expected


def test_inbox_address_is_recomputed_from_deployer_salt_and_initcode() -> None:
    assert keccak256(inbox_initcode()) == INBOX_INITCODE_HASH  # a new contract: a new constant
    assert CREATE2_DEPLOYER.hex() == "4e59b44847b379578588920ca78fbf26c0b4956c"
    assert keccak256(b"lightpost inbox v1") == INBOX_SALT
    expected = keccak256(b"\xff" + CREATE2_DEPLOYER + INBOX_SALT + keccak256(inbox_initcode()))
    assert expected[12:] == INBOX_ADDRESS
    assert INBOX_ADDRESS.hex() == "29735a29e6825e10aeabf064c801ccfd3e0b6b25"


def test_inbox_code_hash_is_the_shipped_runtime() -> None:
    # the device core holds only this hash (the receiver's codeHash check at `complete`)
    assert keccak256(inbox_runtime()) == INBOX_CODE_HASH  # a new contract: a new constant


def test_code_matches() -> None:
    runtime = inbox_runtime()
    assert code_matches(keccak256(runtime), runtime)
    assert not code_matches(keccak256(runtime + b"\x00"), runtime)
    assert not code_matches(keccak256(b""), runtime)  # no code at the address
