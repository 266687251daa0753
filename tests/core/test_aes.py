"""AES-128 and CTR mode: FIPS-197 / SP 800-38A known answers, and pycryptodome as reference."""

from __future__ import annotations

import pytest
from Crypto.Cipher import AES as ReferenceAES  # pycryptodome: test-only reference
from hypothesis import given, settings
from hypothesis import strategies as st

from lightpost.core import aes

# FIPS-197 appendix C.1 (AES-128 example vector).
C1_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
C1_PLAINTEXT = bytes.fromhex("00112233445566778899aabbccddeeff")
C1_CIPHERTEXT = bytes.fromhex("69c4e0d86a7b0430d8cdb78070b4c55a")

# FIPS-197 appendix A.1 (key expansion) and appendix B (cipher example).
B_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
B_INPUT = bytes.fromhex("3243f6a8885a308d313198a2e0370734")
B_OUTPUT = bytes.fromhex("3925841d02dc09fbdc118597196a0b32")

# NIST SP 800-38A appendix F.5.1, CTR-AES128.Encrypt (the counter crosses a byte boundary).
F51_COUNTER = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
F51_PLAINTEXT = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710"
)
F51_CIPHERTEXT = bytes.fromhex(
    "874d6191b620e3261bef6864990db6ce"
    "9806f66b7970fdff8617187bb9fffdff"
    "5ae4df3edbd5d35e5b4f09020db03eab"
    "1e031dda2fbe03d1792170a0f3009cee"
)


def _reference_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    return ReferenceAES.new(key, ReferenceAES.MODE_CTR, nonce=b"", initial_value=iv).encrypt(data)


def test_fips197_c1_known_answer() -> None:
    assert aes.encrypt_block(C1_KEY, C1_PLAINTEXT) == C1_CIPHERTEXT


def test_fips197_appendix_b_known_answer() -> None:
    assert aes.encrypt_block(B_KEY, B_INPUT) == B_OUTPUT


def test_key_expansion_matches_fips197_a1() -> None:
    words = aes.expand_key(B_KEY)
    assert len(words) == 44
    assert words[:4] == (0x2B7E1516, 0x28AED2A6, 0xABF71588, 0x09CF4F3C)
    assert words[4] == 0xA0FAFE17
    assert words[43] == 0xB6630CA6


def test_sbox_entries_from_fips197() -> None:
    # FIPS-197 figure 7 and the worked example of section 5.1.1 ({53} -> {ed}).
    assert aes._SBOX[0x00] == 0x63
    assert aes._SBOX[0x53] == 0xED
    assert aes._SBOX[0xFF] == 0x16
    assert sorted(aes._SBOX) == list(range(256))  # a permutation


def test_sp800_38a_ctr_known_answer() -> None:
    assert aes.ctr(B_KEY, F51_COUNTER, F51_PLAINTEXT) == F51_CIPHERTEXT
    assert aes.ctr(B_KEY, F51_COUNTER, F51_CIPHERTEXT) == F51_PLAINTEXT


def test_ctr_counter_wraps_modulo_2_128() -> None:
    iv = b"\xff" * 16
    data = bytes(range(48))
    assert aes.ctr(B_KEY, iv, data) == _reference_ctr(B_KEY, iv, data)
    # The second block's keystream is E(0): wrap-around, not an error or a 129-bit counter.
    keystream = aes.ctr(B_KEY, iv, bytes(32))
    assert keystream[16:] == aes.encrypt_block(B_KEY, bytes(16))


def test_ctr_partial_and_empty_blocks() -> None:
    assert aes.ctr(C1_KEY, F51_COUNTER, b"") == b""
    for n in (1, 15, 17, 31, 33):
        data = bytes(range(n))
        assert aes.ctr(C1_KEY, F51_COUNTER, data) == _reference_ctr(C1_KEY, F51_COUNTER, data)


@pytest.mark.parametrize(
    ("key", "block"),
    [(bytes(15), bytes(16)), (bytes(24), bytes(16)), (bytes(16), bytes(15)), (b"", b"")],
)
def test_wrong_sizes_are_refused(key: bytes, block: bytes) -> None:
    with pytest.raises(ValueError):
        aes.encrypt_block(key, block)


def test_ctr_refuses_short_iv() -> None:
    with pytest.raises(ValueError):
        aes.ctr(bytes(16), bytes(8), b"x")


@settings(max_examples=150)
@given(key=st.binary(min_size=16, max_size=16), block=st.binary(min_size=16, max_size=16))
def test_block_matches_reference(key: bytes, block: bytes) -> None:
    expected = ReferenceAES.new(key, ReferenceAES.MODE_ECB).encrypt(block)
    assert aes.encrypt_block(key, block) == expected


@settings(max_examples=150)
@given(
    key=st.binary(min_size=16, max_size=16),
    iv=st.binary(min_size=16, max_size=16),
    data=st.binary(max_size=80),
)
def test_ctr_matches_reference_and_is_an_involution(key: bytes, iv: bytes, data: bytes) -> None:
    encrypted = aes.ctr(key, iv, data)
    assert encrypted == _reference_ctr(key, iv, data)
    assert aes.ctr(key, iv, encrypted) == data
