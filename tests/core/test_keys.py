"""Keys, EIP-55 addresses and signatures; cross-checked against eth-account / eth-keys."""

from __future__ import annotations

import eth_keys
import pytest
from eth_account import Account
from eth_keys.backends import NativeECCBackend
from hypothesis import given, settings
from hypothesis import strategies as st

from lightpost.core.hashing import keccak256
from lightpost.core.keys import (
    SECP256K1_N,
    PrivateKey,
    Signature,
    address_from_public_key,
    parse_address,
    recover_address,
    to_checksum_address,
)
from lightpost.errors import DecodingError, LightpostError, SignatureError
from lightpost_operator.keywrite import generate_key
from tests.conftest import ANVIL_DEV_KEYS

# Pure-Python secp256k1 (eth-keys' native backend): independent of libsecp256k1, which
# both lightpost and eth-account's default backend (coincurve) use.
NATIVE = eth_keys.KeyAPI(NativeECCBackend)

# The examples listed in the EIP-55 specification (all caps, all lower, normal).
EIP55_EXAMPLES = [
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]

secrets_st = st.integers(min_value=1, max_value=SECP256K1_N - 1).map(
    lambda v: v.to_bytes(32, "big")
)
hashes_st = st.binary(min_size=32, max_size=32)


# --- EIP-55 ------------------------------------------------------------------------


@pytest.mark.parametrize("text", EIP55_EXAMPLES)
def test_eip55_examples(text: str) -> None:
    raw = parse_address(text)
    assert raw == bytes.fromhex(text[2:])
    assert to_checksum_address(raw) == text
    assert parse_address(text.lower()) == raw
    assert parse_address("0x" + text[2:].upper()) == raw
    assert parse_address(text[2:]) == raw  # 0x is optional


def _flip_case_of_one_letter(text: str) -> str:
    body = text[2:]
    i = next(i for i, c in enumerate(body) if c.isalpha())
    return "0x" + body[:i] + body[i].swapcase() + body[i + 1 :]


@pytest.mark.parametrize("text", EIP55_EXAMPLES)
def test_bad_checksum_is_rejected(text: str) -> None:
    with pytest.raises(DecodingError, match="checksum"):
        parse_address(_flip_case_of_one_letter(text))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0x",
        "0x" + "00" * 19,  # 19 bytes
        "0x" + "00" * 21,  # 21 bytes
        "0x" + "0" * 39,
        "0x" + "0" * 41,
        "0x" + "g" * 40,
        "0x" + "  " + "00" * 19,  # whitespace would shorten the result to 19 bytes
        "0x" + "0" * 38 + "-1",
        "0x" + "\u0660" * 40,  # non-ASCII digits
        "0x0x" + "00" * 19,
    ],
)
def test_malformed_addresses_are_rejected(text: str) -> None:
    with pytest.raises(DecodingError):
        parse_address(text)


def test_to_checksum_address_rejects_wrong_length() -> None:
    with pytest.raises(DecodingError):
        to_checksum_address(bytes(19))


@settings(max_examples=200)
@given(st.binary(min_size=20, max_size=20))
def test_checksum_matches_eth_utils(raw: bytes) -> None:
    from eth_utils import to_checksum_address as reference

    text = to_checksum_address(raw)
    assert text == reference(raw)
    assert parse_address(text) == raw


@settings(max_examples=200)
@given(st.text(max_size=50))
def test_parse_address_raises_only_decoding_error(text: str) -> None:
    try:
        raw = parse_address(text)
    except DecodingError:
        return
    assert len(raw) == 20


# --- keys and addresses ------------------------------------------------------------


@pytest.mark.parametrize("hex_key", ANVIL_DEV_KEYS)
def test_addresses_match_eth_account(hex_key: str) -> None:
    key = PrivateKey.from_hex(hex_key)
    assert key.checksum_address == Account.from_key(hex_key).address


def test_anvil_dev_key_0_well_known_address() -> None:
    key = PrivateKey.from_hex(ANVIL_DEV_KEYS[0])
    assert key.checksum_address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


@settings(max_examples=100)
@given(secrets_st)
def test_address_matches_native_backend(secret: bytes) -> None:
    key = PrivateKey(secret)
    native = NATIVE.PrivateKey(secret)
    assert key.address == native.public_key.to_canonical_address()
    assert address_from_public_key(native.public_key.to_bytes()) == key.address


def test_from_hex_variants() -> None:
    hex_key = ANVIL_DEV_KEYS[1]
    key = PrivateKey.from_hex(hex_key)
    assert PrivateKey.from_hex(hex_key[2:]) == key
    assert PrivateKey.from_hex(" " + hex_key.upper().replace("0X", "0x") + "\n") == key
    assert key.secret_bytes() == bytes.fromhex(hex_key[2:])


@pytest.mark.parametrize(
    "text",
    ["", "0x", "00" * 31, "00" * 33, "zz" * 32, "0" * 63, "00" * 32, f"{SECP256K1_N:064x}"],
)
def test_from_hex_rejects_garbage(text: str) -> None:
    with pytest.raises(DecodingError):
        PrivateKey.from_hex(text)


def test_constructor_rejects_out_of_range() -> None:
    for raw in (bytes(32), SECP256K1_N.to_bytes(32, "big"), b"\x01" * 31):
        with pytest.raises(ValueError):
            PrivateKey(raw)


def test_generate_retries_until_in_range() -> None:
    outputs = iter([bytes(32), b"\xff" * 32, b"\x07" * 32])
    calls: list[int] = []

    def randbytes(n: int) -> bytes:
        calls.append(n)
        return next(outputs)

    key = generate_key(randbytes)
    assert key.secret_bytes() == b"\x07" * 32
    assert calls == [32, 32, 32]


# --- secrets never leak ----------------------------------------------------------


def _secret_forms(secret: bytes) -> list[str]:
    h = secret.hex()
    return [h, h.upper(), h[:16], str(int.from_bytes(secret, "big")), repr(secret)]


@pytest.mark.parametrize("hex_key", ANVIL_DEV_KEYS)
def test_repr_and_str_hide_the_secret(hex_key: str) -> None:
    key = PrivateKey.from_hex(hex_key)
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert key.checksum_address in text
        for form in _secret_forms(key.secret_bytes()):
            assert form not in text


@pytest.mark.parametrize(
    "mangle",
    [
        lambda h: h[:-1] + "g",  # one non-hex digit
        lambda h: h + "00",  # too long
        lambda h: h[2:],  # too short
        lambda h: "0x" + h + "zz",
        lambda h: h[:32] + " " + h[32:],  # whitespace inside
        lambda h: h[:62] + "\u0661\u0662",  # non-ASCII digits
    ],
)
@pytest.mark.parametrize("hex_key", ANVIL_DEV_KEYS[:2])
def test_from_hex_errors_do_not_echo_input(hex_key: str, mangle: object) -> None:
    body = hex_key[2:]
    garbage = mangle(body)  # type: ignore[operator]
    with pytest.raises(DecodingError) as info:
        PrivateKey.from_hex(garbage)
    message = str(info.value) + repr(info.value)
    assert body[:16] not in message
    assert garbage not in message
    assert body[-16:] not in message


def test_from_hex_error_chain_is_suppressed() -> None:
    """``raise ... from None``: a traceback must not show the ValueError with the input."""
    with pytest.raises(DecodingError) as info:
        PrivateKey.from_hex("11" * 31 + "zz")
    assert info.value.__suppress_context__ or info.value.__context__ is None


# --- signatures ------------------------------------------------------------------


@settings(max_examples=100)
@given(secrets_st, hashes_st)
def test_sign_recover_round_trip(secret: bytes, msg_hash: bytes) -> None:
    key = PrivateKey(secret)
    sig = key.sign_hash(msg_hash)
    assert sig.s <= SECP256K1_N // 2
    assert recover_address(msg_hash, sig) == key.address
    other = keccak256(msg_hash)
    assert recover_address(other, sig) != key.address


@settings(max_examples=100)
@given(secrets_st, hashes_st)
def test_signatures_match_native_backend(secret: bytes, msg_hash: bytes) -> None:
    """RFC 6979 + low-s: an independent pure-Python implementation gives the same bytes."""
    sig = PrivateKey(secret).sign_hash(msg_hash)
    native = NATIVE.PrivateKey(secret).sign_msg_hash(msg_hash)
    assert (sig.y_parity, sig.r, sig.s) == (native.v, native.r, native.s)


@pytest.mark.parametrize("hex_key", ANVIL_DEV_KEYS)
def test_signatures_match_eth_account(hex_key: str) -> None:
    msg_hash = keccak256(b"lightpost " + hex_key.encode()[-4:])
    sig = PrivateKey.from_hex(hex_key).sign_hash(msg_hash)
    reference = Account.unsafe_sign_hash(msg_hash, hex_key)
    assert (sig.r, sig.s, 27 + sig.y_parity) == (reference.r, reference.s, reference.v)
    assert sig.to_bytes() == bytes(reference.signature)[:64] + bytes([sig.y_parity])
    recovered = Account._recover_hash(msg_hash, signature=reference.signature)
    assert to_checksum_address(recover_address(msg_hash, sig)) == recovered


def test_high_s_is_rejected() -> None:
    sig = PrivateKey.from_hex(ANVIL_DEV_KEYS[0]).sign_hash(keccak256(b"x"))
    with pytest.raises(SignatureError, match="EIP-2"):
        Signature(y_parity=1 - sig.y_parity, r=sig.r, s=SECP256K1_N - sig.s)


@pytest.mark.parametrize(
    ("y_parity", "r", "s"),
    [
        (2, 1, 1),
        (-1, 1, 1),
        (0, 0, 1),
        (0, SECP256K1_N, 1),
        (0, 1, 0),
        (0, 1, SECP256K1_N // 2 + 1),
    ],
)
def test_invalid_signature_fields(y_parity: int, r: int, s: int) -> None:
    with pytest.raises(SignatureError):
        Signature(y_parity=y_parity, r=r, s=s)


def test_recover_rejects_bad_hash_length() -> None:
    sig = PrivateKey.from_hex(ANVIL_DEV_KEYS[0]).sign_hash(bytes(32))
    with pytest.raises(SignatureError):
        recover_address(bytes(31), sig)


@settings(max_examples=100)
@given(
    hashes_st,
    st.integers(min_value=0, max_value=1),
    st.integers(min_value=1, max_value=SECP256K1_N - 1),
    st.integers(min_value=1, max_value=SECP256K1_N // 2),
)
def test_recover_arbitrary_signatures_raises_only_lightpost_errors(
    msg_hash: bytes, y_parity: int, r: int, s: int
) -> None:
    try:
        address = recover_address(msg_hash, Signature(y_parity=y_parity, r=r, s=s))
    except LightpostError:
        return
    assert len(address) == 20
