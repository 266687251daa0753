"""Keystore v3: geth / ethereum/tests vectors, eth-account both ways, malformed input."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from Crypto.Cipher import AES as ReferenceAES  # pycryptodome: test-only reference
from Crypto.Protocol.KDF import scrypt as reference_scrypt_kdf
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightpost.core.hashing import keccak256
from lightpost.core.keys import PrivateKey
from lightpost.core.keystore import SCRYPT_MAX_MEMORY, scrypt_memory
from lightpost.core.keystore import decrypt_key as strict_decrypt_key
from lightpost.errors import KeystoreError
from lightpost_operator.keywrite import (
    LIGHT_SCRYPT_N,
    LIGHT_SCRYPT_P,
    PBKDF2_ITERATIONS,
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    encrypt_key,
)
from tests.conftest import ANVIL_DEV_KEYS, VECTORS, vector_path

PASSWORD = "correct horse battery staple \u00e9"
"""A distinctive password, to check that it never appears in error messages."""

SMALL_SCRYPT = {"scrypt_n": 2**10, "scrypt_r": 8, "scrypt_p": 1}
"""Small work factors for speed; one test below uses the defaults."""

SMALL_PBKDF2 = 1000


def decrypt_key(keystore: Any, password: str, **kw: Any) -> PrivateKey:
    """The tests' small work factors (and the geth vectors' n = 2) need the explicit
    weak-KDF opt-in; the strict default is tested on its own below."""
    return strict_decrypt_key(keystore, password, allow_weak_kdf=True, **kw)


def reference_scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    """pycryptodome's scrypt, which accepts r = 1 with n >= 2^16 (OpenSSL does not)."""
    result: bytes = reference_scrypt_kdf(password, salt, dklen, n, r, p)
    return result


def counting_randbytes(seed: int = 0) -> Callable[[int], bytes]:
    """Deterministic stand-in for os.urandom (distinct bytes per call)."""
    state = {"i": seed}

    def randbytes(n: int) -> bytes:
        out = hashlib.sha256(state["i"].to_bytes(8, "big")).digest() * 2
        state["i"] += 1
        return out[:n]

    return randbytes


def light_keystore(key: PrivateKey | None = None, **kw: Any) -> dict[str, Any]:
    key = key or PrivateKey.from_hex(ANVIL_DEV_KEYS[0])
    params: dict[str, Any] = {"randbytes": counting_randbytes(), **SMALL_SCRYPT, **kw}
    return encrypt_key(key, PASSWORD, **params)


def _assert_no_secret(message: str, key: PrivateKey, password: str = PASSWORD) -> None:
    assert password not in message
    assert key.secret_bytes().hex() not in message
    assert key.secret_bytes().hex()[:16] not in message


# --- vectors ---------------------------------------------------------------------


def _needs_reference_scrypt(doc: dict[str, Any]) -> bool:
    crypto = doc.get("crypto") or doc["Crypto"]
    params = crypto["kdfparams"]
    return bool(crypto["kdf"] == "scrypt" and params["n"] >= 2 ** (16 * params["r"]))


def _vector_cases() -> list[tuple[str, str]]:
    """Every vector once: basic_tests.json repeats two of v3_test_vector.json verbatim."""
    cases, seen = [], set()
    for name in ("v3_test_vector.json", "basic_tests.json"):
        path = VECTORS / "keystore" / name
        if path.exists():
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            for key in sorted(data):
                fingerprint = json.dumps(data[key], sort_keys=True)
                if fingerprint not in seen:
                    seen.add(fingerprint)
                    cases.append((name, key))
    return cases


def test_basic_tests_repeat_the_wiki_vectors() -> None:
    """Justifies the de-duplication above (so no vector is silently dropped)."""
    basic = {"test1": "wikipage_test_vector_pbkdf2", "test2": "wikipage_test_vector_scrypt"}
    for ours, theirs in basic.items():
        assert _vector("basic_tests.json", ours) == _vector("v3_test_vector.json", theirs)


def _vector(file: str, case: str) -> dict[str, Any]:
    with open(vector_path("keystore", file), encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)[case]
    return data


@pytest.mark.parametrize(("file", "case"), _vector_cases())
def test_vectors_decrypt(file: str, case: str) -> None:
    vector = _vector(file, case)
    doc, password = vector["json"], vector["password"]
    if _needs_reference_scrypt(doc):
        # stdlib scrypt (OpenSSL) refuses n >= 2^(16 r): a clear KeystoreError, then the
        # same file decrypts through an injected implementation.
        with pytest.raises(KeystoreError, match="RFC 7914"):
            decrypt_key(doc, password)
        key = decrypt_key(doc, password, scrypt=reference_scrypt)
    else:
        key = decrypt_key(doc, password)
    # 31_byte_key / 30_byte_key: geth stores the key as a big integer (leading zeros cut).
    assert key.secret_bytes() == bytes.fromhex(vector["priv"].rjust(64, "0"))


@pytest.mark.parametrize(("file", "case"), _vector_cases())
def test_vectors_wrong_password(file: str, case: str) -> None:
    vector = _vector(file, case)
    doc = vector["json"]
    scrypt = reference_scrypt if _needs_reference_scrypt(doc) else None
    with pytest.raises(KeystoreError, match=r"wrong password \(MAC mismatch\)") as info:
        decrypt_key(doc, vector["password"] + "x", scrypt=scrypt)
    assert vector["password"] + "x" not in str(info.value)
    assert vector["priv"] not in str(info.value)


def test_very_light_scrypt_vector() -> None:
    text = vector_path("keystore", "very-light-scrypt.json").read_text(encoding="utf-8")
    key = decrypt_key(text, "")  # the password is the empty string
    assert key.address.hex() == json.loads(text)["address"]
    with pytest.raises(KeystoreError, match="MAC mismatch"):
        decrypt_key(text, " ")


# --- interoperability with eth-account ---------------------------------------------


@pytest.mark.parametrize(("kdf", "iterations"), [("scrypt", 2**10), ("pbkdf2", SMALL_PBKDF2)])
@pytest.mark.parametrize("hex_key", ANVIL_DEV_KEYS[:2])
def test_eth_account_writes_lightpost_reads(kdf: str, iterations: int, hex_key: str) -> None:
    doc = Account.encrypt(hex_key, PASSWORD, kdf=kdf, iterations=iterations)
    assert decrypt_key(doc, PASSWORD).secret_bytes() == bytes.fromhex(hex_key[2:])
    assert decrypt_key(json.dumps(doc), PASSWORD) == PrivateKey.from_hex(hex_key)
    with pytest.raises(KeystoreError, match="MAC mismatch"):
        decrypt_key(doc, PASSWORD[:-1])


@pytest.mark.parametrize(
    "kwargs", [{"kdf": "scrypt", **SMALL_SCRYPT}, {"kdf": "pbkdf2", "pbkdf2_iterations": 1000}]
)
@pytest.mark.parametrize("hex_key", ANVIL_DEV_KEYS[:2])
def test_lightpost_writes_eth_account_reads(kwargs: dict[str, Any], hex_key: str) -> None:
    key = PrivateKey.from_hex(hex_key)
    doc = encrypt_key(key, PASSWORD, randbytes=os.urandom, **kwargs)
    assert Account.decrypt(json.dumps(doc), PASSWORD) == key.secret_bytes()
    assert decrypt_key(doc, PASSWORD) == key


def test_default_parameters_interoperate() -> None:
    """One full-cost run: geth-standard scrypt (n=2^18, r=8, p=1), read by eth-account."""
    key = PrivateKey.from_hex(ANVIL_DEV_KEYS[3])
    doc = encrypt_key(key, PASSWORD, randbytes=os.urandom)
    params = doc["crypto"]["kdfparams"]
    assert (
        (params["n"], params["r"], params["p"]) == (SCRYPT_N, SCRYPT_R, SCRYPT_P) == (2**18, 8, 1)
    )
    assert Account.decrypt(doc, PASSWORD) == key.secret_bytes()


def test_light_parameters() -> None:
    key = PrivateKey.from_hex(ANVIL_DEV_KEYS[2])
    doc = light_keystore(key, scrypt_n=LIGHT_SCRYPT_N, scrypt_p=LIGHT_SCRYPT_P)
    assert (doc["crypto"]["kdfparams"]["n"], doc["crypto"]["kdfparams"]["p"]) == (4096, 6)
    assert decrypt_key(doc, PASSWORD) == key


def test_pbkdf2_default_iterations_are_written() -> None:
    doc = light_keystore(kdf="pbkdf2")
    assert doc["crypto"]["kdfparams"]["c"] == PBKDF2_ITERATIONS


# --- the written document --------------------------------------------------------


def test_document_structure_and_independent_mac() -> None:
    key = PrivateKey.from_hex(ANVIL_DEV_KEYS[1])
    rand = counting_randbytes(7)
    replay = counting_randbytes(7)
    expected_salt, expected_iv, expected_id = (replay(n) for n in (32, 16, 16))
    doc = encrypt_key(key, PASSWORD, randbytes=rand, **SMALL_SCRYPT)

    assert doc["version"] == 3
    assert doc["address"] == key.address.hex() and doc["address"] == doc["address"].lower()
    assert not doc["address"].startswith("0x")
    parsed_id = uuid.UUID(doc["id"])
    assert parsed_id.version == 4 and parsed_id.variant == uuid.RFC_4122
    assert str(parsed_id) == doc["id"]
    assert parsed_id.bytes[:6] == expected_id[:6]
    crypto = doc["crypto"]
    assert crypto["cipher"] == "aes-128-ctr"
    assert crypto["kdf"] == "scrypt"
    assert crypto["kdfparams"] == {
        "dklen": 32,
        "n": 2**10,
        "p": 1,
        "r": 8,
        "salt": expected_salt.hex(),
    }
    assert crypto["cipherparams"] == {"iv": expected_iv.hex()}
    json.dumps(doc)  # JSON-compatible

    # Recompute everything with independent primitives (OpenSSL scrypt, pycryptodome AES).
    derived = hashlib.scrypt(
        PASSWORD.encode(), salt=expected_salt, n=2**10, r=8, p=1, dklen=32, maxmem=2**26
    )
    cipher = ReferenceAES.new(
        derived[:16], ReferenceAES.MODE_CTR, nonce=b"", initial_value=expected_iv
    )
    ciphertext = cipher.encrypt(key.secret_bytes())
    assert crypto["ciphertext"] == ciphertext.hex()
    assert crypto["mac"] == keccak256(derived[16:32] + ciphertext).hex()


def test_same_randomness_same_document() -> None:
    key = PrivateKey.from_hex(ANVIL_DEV_KEYS[0])
    a = encrypt_key(key, PASSWORD, randbytes=counting_randbytes(1), **SMALL_SCRYPT)
    b = encrypt_key(key, PASSWORD, randbytes=counting_randbytes(1), **SMALL_SCRYPT)
    c = encrypt_key(key, PASSWORD, randbytes=counting_randbytes(2), **SMALL_SCRYPT)
    assert a == b
    assert a["crypto"]["ciphertext"] != c["crypto"]["ciphertext"]


@pytest.mark.parametrize("bad", [lambda n: b"", lambda n: bytes(n + 1), lambda n: "x" * n])
def test_bad_randbytes_is_refused(bad: Callable[[int], Any]) -> None:
    with pytest.raises(KeystoreError, match="randbytes"):
        encrypt_key(PrivateKey.from_hex(ANVIL_DEV_KEYS[0]), PASSWORD, randbytes=bad)


def test_encrypt_refuses_unknown_kdf_and_bad_parameters() -> None:
    key = PrivateKey.from_hex(ANVIL_DEV_KEYS[0])
    with pytest.raises(KeystoreError, match="kdf"):
        encrypt_key(key, PASSWORD, randbytes=os.urandom, kdf="argon2")  # type: ignore[arg-type]
    with pytest.raises(KeystoreError, match="power of two"):
        encrypt_key(key, PASSWORD, randbytes=os.urandom, scrypt_n=1000)


def test_encrypt_error_messages_have_no_secrets() -> None:
    key = PrivateKey.from_hex(ANVIL_DEV_KEYS[0])
    with pytest.raises(KeystoreError) as info:
        encrypt_key(key, PASSWORD, randbytes=os.urandom, scrypt_n=3)
    _assert_no_secret(str(info.value), key)


# --- lenient reading -------------------------------------------------------------


def test_capitalised_crypto_key_is_accepted() -> None:
    doc = light_keystore()
    doc["Crypto"] = doc.pop("crypto")
    assert decrypt_key(doc, PASSWORD) == PrivateKey.from_hex(ANVIL_DEV_KEYS[0])


def test_0x_prefixed_and_upper_case_hex_are_accepted() -> None:
    doc = light_keystore()
    crypto = doc["crypto"]
    crypto["ciphertext"] = "0x" + crypto["ciphertext"].upper()
    crypto["mac"] = crypto["mac"].upper()
    crypto["cipherparams"]["iv"] = "0X" + crypto["cipherparams"]["iv"]
    doc["address"] = "0x" + doc["address"]
    assert decrypt_key(json.dumps(doc).encode(), PASSWORD) == PrivateKey.from_hex(ANVIL_DEV_KEYS[0])


def test_address_field_is_optional_but_checked() -> None:
    doc = light_keystore()
    del doc["address"]
    assert decrypt_key(doc, PASSWORD) == PrivateKey.from_hex(ANVIL_DEV_KEYS[0])
    doc["address"] = PrivateKey.from_hex(ANVIL_DEV_KEYS[1]).address.hex()
    with pytest.raises(KeystoreError, match="address"):
        decrypt_key(doc, PASSWORD)


# --- malformed input -------------------------------------------------------------


def _delete(path: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        target = doc
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return apply


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        target = doc
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return apply


MALFORMED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "no version": (_delete(("version",)), "missing field 'version'"),
    "version 2": (_set(("version",), 2), "unsupported version"),
    "version as text": (_set(("version",), "3"), "unsupported version"),
    "version true": (_set(("version",), True), "unsupported version"),
    "no crypto": (_delete(("crypto",)), "missing field 'crypto'"),
    "crypto not object": (_set(("crypto",), []), "crypto must be a JSON object"),
    "no cipher": (_delete(("crypto", "cipher")), "missing field 'crypto.cipher'"),
    "other cipher": (_set(("crypto", "cipher"), "aes-128-cbc"), "unsupported cipher"),
    "no iv": (_delete(("crypto", "cipherparams", "iv")), "missing field"),
    "short iv": (_set(("crypto", "cipherparams", "iv"), "00" * 15), "iv must be 16 bytes"),
    "odd hex": (_set(("crypto", "ciphertext"), "abc"), "not valid hex"),
    "spaced hex": (_set(("crypto", "ciphertext"), "ab cd"), "not valid hex"),
    "non-hex": (_set(("crypto", "mac"), "zz" * 32), "not valid hex"),
    "hex not text": (_set(("crypto", "mac"), 12), "must be a hex string"),
    "short mac": (_set(("crypto", "mac"), "00" * 31), "mac must be 32 bytes"),
    "empty ciphertext": (_set(("crypto", "ciphertext"), ""), "ciphertext must be"),
    "long ciphertext": (_set(("crypto", "ciphertext"), "00" * 33), "ciphertext must be"),
    "no kdf": (_delete(("crypto", "kdf")), "missing field 'crypto.kdf'"),
    "other kdf": (_set(("crypto", "kdf"), "argon2id"), "unsupported kdf"),
    "no kdfparams": (_delete(("crypto", "kdfparams")), "missing field"),
    "no salt": (_delete(("crypto", "kdfparams", "salt")), "missing field"),
    "no n": (_delete(("crypto", "kdfparams", "n")), "missing field 'crypto.kdfparams.n'"),
    "n not power of 2": (_set(("crypto", "kdfparams", "n"), 1000), "power of two"),
    "n is 1": (_set(("crypto", "kdfparams", "n"), 1), "power of two"),
    "n float": (_set(("crypto", "kdfparams", "n"), 1024.0), "positive integer"),
    "r zero": (_set(("crypto", "kdfparams", "r"), 0), "positive integer"),
    "dklen 16": (_set(("crypto", "kdfparams", "dklen"), 16), "dklen must be 32"),
    "huge memory": (_set(("crypto", "kdfparams", "n"), 2**30), "above the ceiling of 257 MiB"),
    "huge r*p": (_set(("crypto", "kdfparams", "p"), 2**30), "too large"),
    "openssl refuses": (
        lambda d: d["crypto"]["kdfparams"].update(n=2**16, r=1),
        "RFC 7914",
    ),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_documents(name: str) -> None:
    mutate, reason = MALFORMED[name]
    doc = light_keystore()
    mutate(doc)
    with pytest.raises(KeystoreError, match=reason.replace("(", r"\(").replace(")", r"\)")) as info:
        decrypt_key(doc, PASSWORD)
    _assert_no_secret(str(info.value), PrivateKey.from_hex(ANVIL_DEV_KEYS[0]))


PBKDF2_MALFORMED = {
    "prf": (_set(("crypto", "kdfparams", "prf"), "hmac-sha512"), "unsupported pbkdf2 prf"),
    "no prf": (_delete(("crypto", "kdfparams", "prf")), "missing field"),
    "no c": (_delete(("crypto", "kdfparams", "c")), "missing field 'crypto.kdfparams.c'"),
    "huge c": (_set(("crypto", "kdfparams", "c"), 10**12), "above the allowed maximum"),
    "negative c": (_set(("crypto", "kdfparams", "c"), -1), "positive integer"),
}


@pytest.mark.parametrize("name", sorted(PBKDF2_MALFORMED))
def test_malformed_pbkdf2_documents(name: str) -> None:
    mutate, reason = PBKDF2_MALFORMED[name]
    doc = light_keystore(kdf="pbkdf2", pbkdf2_iterations=SMALL_PBKDF2)
    mutate(doc)
    with pytest.raises(KeystoreError, match=reason):
        decrypt_key(doc, PASSWORD)


@pytest.mark.parametrize(
    "text", ["", "{", "[]", "3", "null", '"x"', b"\xff\xfe", "[" * 50_000, "{" * 20, "x" * 70_000]
)
def test_not_a_json_object(text: str | bytes) -> None:
    # eth-account (imported here) raises the recursion limit to 100000, so without the
    # depth pre-check "[" * 50000 would crash the interpreter rather than raise.
    with pytest.raises(KeystoreError):
        decrypt_key(text, PASSWORD)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    doc = light_keystore()
    doc["x-note"] = '[{\\"' + "[" * 100 + '"'
    doc["x-meta"] = {"a": {"b": {"c": [[1]]}}}
    assert decrypt_key(json.dumps(doc), PASSWORD) == PrivateKey.from_hex(ANVIL_DEV_KEYS[0])


def test_decrypted_key_out_of_range() -> None:
    """A file whose MAC is right but whose plaintext is the zero key (built by hand)."""
    salt, iv = bytes(32), bytes(16)
    derived = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt, SMALL_PBKDF2, 32)
    ciphertext = ReferenceAES.new(
        derived[:16], ReferenceAES.MODE_CTR, nonce=b"", initial_value=iv
    ).encrypt(bytes(32))
    doc = {
        "version": 3,
        "crypto": {
            "cipher": "aes-128-ctr",
            "cipherparams": {"iv": iv.hex()},
            "ciphertext": ciphertext.hex(),
            "kdf": "pbkdf2",
            "kdfparams": {"c": SMALL_PBKDF2, "dklen": 32, "prf": "hmac-sha256", "salt": salt.hex()},
            "mac": keccak256(derived[16:32] + ciphertext).hex(),
        },
    }
    with pytest.raises(KeystoreError, match="outside the secp256k1 range"):
        decrypt_key(doc, PASSWORD)


def test_wrong_password_message_has_no_secrets() -> None:
    key = PrivateKey.from_hex(ANVIL_DEV_KEYS[0])
    doc = light_keystore(key)
    wrong = PASSWORD + " (wrong)"
    with pytest.raises(KeystoreError) as info:
        decrypt_key(doc, wrong)
    assert str(info.value) == "wrong password (MAC mismatch)"
    _assert_no_secret(repr(info.value), key, wrong)


# --- hypothesis ------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-3, max_value=64)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["scrypt", "pbkdf2", "aes-128-ctr", "hmac-sha256", "00" * 16, "0x"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)

_PATHS = [
    ("version",),
    ("address",),
    ("crypto",),
    ("crypto", "cipher"),
    ("crypto", "cipherparams"),
    ("crypto", "cipherparams", "iv"),
    ("crypto", "ciphertext"),
    ("crypto", "kdf"),
    ("crypto", "kdfparams"),
    ("crypto", "kdfparams", "n"),
    ("crypto", "kdfparams", "r"),
    ("crypto", "kdfparams", "p"),
    ("crypto", "kdfparams", "dklen"),
    ("crypto", "kdfparams", "salt"),
    ("crypto", "mac"),
]
_BASE = light_keystore(**{"scrypt_n": 2, "scrypt_r": 8, "scrypt_p": 1})


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_PATHS), json_values), min_size=1, max_size=3))
def test_mutated_documents_raise_only_keystore_errors(
    mutations: list[tuple[tuple[str, ...], Any]],
) -> None:
    doc = copy.deepcopy(_BASE)
    for path, value in mutations:
        target: Any = doc
        for part in path[:-1]:
            target = target.get(part) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target[path[-1]] = value
    try:
        key = decrypt_key(doc, PASSWORD)
    except KeystoreError as exc:
        _assert_no_secret(str(exc), PrivateKey.from_hex(ANVIL_DEV_KEYS[0]))
        return
    assert key == PrivateKey.from_hex(ANVIL_DEV_KEYS[0])


@settings(max_examples=200)
@given(st.text(max_size=60) | st.binary(max_size=60))
def test_random_text_raises_only_keystore_errors(text: str | bytes) -> None:
    with pytest.raises(KeystoreError):
        decrypt_key(text, PASSWORD)


# --- work-factor floor and memory ceiling -----------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"scrypt_n": 2}, "scrypt n 2 is below the minimum 4096"),
        ({"scrypt_n": 2**11}, "scrypt n 2048 is below the minimum 4096"),
        ({"kdf": "pbkdf2", "pbkdf2_iterations": 1}, "pbkdf2 iteration count 1 is below"),
        ({"kdf": "pbkdf2", "pbkdf2_iterations": 99_999}, "below the minimum 100000"),
    ],
)
def test_weak_work_factors_are_refused_without_the_opt_in(
    kwargs: dict[str, Any], needle: str
) -> None:
    key = PrivateKey.from_hex(ANVIL_DEV_KEYS[0])
    doc = light_keystore(key, **kwargs)
    with pytest.raises(KeystoreError, match=needle) as info:
        strict_decrypt_key(doc, PASSWORD)
    assert len(str(info.value).splitlines()) == 1
    _assert_no_secret(str(info.value), key)
    assert strict_decrypt_key(doc, PASSWORD, allow_weak_kdf=True) == key


def test_the_geth_n2_vector_needs_the_opt_in() -> None:
    vector = _vector("v3_test_vector.json", "31_byte_key")
    with pytest.raises(KeystoreError, match="below the minimum"):
        strict_decrypt_key(vector["json"], vector["password"])


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"scrypt_n": LIGHT_SCRYPT_N, "scrypt_p": LIGHT_SCRYPT_P}, "scrypt"),  # devnet
        ({"kdf": "pbkdf2", "pbkdf2_iterations": 100_000}, "pbkdf2"),
    ],
)
def test_the_floor_admits_light_device_keys(kwargs: dict[str, Any], expected: str) -> None:
    key = PrivateKey.from_hex(ANVIL_DEV_KEYS[1])
    doc = light_keystore(key, **kwargs)
    assert doc["crypto"]["kdf"] == expected
    assert strict_decrypt_key(doc, PASSWORD) == key


def test_the_scrypt_ceiling_fits_the_standard_parameters_and_no_more() -> None:
    standard = scrypt_memory(SCRYPT_N, SCRYPT_R, SCRYPT_P)
    assert standard <= SCRYPT_MAX_MEMORY < scrypt_memory(2 * SCRYPT_N, SCRYPT_R, SCRYPT_P)
    assert SCRYPT_MAX_MEMORY < 1 << 30  # the old 1 GiB ceiling exceeded a small device


def test_scrypt_above_the_ceiling_is_one_clear_line_before_any_allocation() -> None:
    key = PrivateKey.from_hex(ANVIL_DEV_KEYS[0])
    doc = light_keystore(key)
    doc["crypto"]["kdfparams"]["n"] = 2**20  # 1 GiB with r = 8: accepted before
    calls: list[int] = []

    def spy(*args: Any) -> bytes:
        calls.append(1)
        return b"\x00" * 32

    with pytest.raises(KeystoreError) as info:
        strict_decrypt_key(doc, PASSWORD, scrypt=spy)
    assert str(info.value) == (
        "keystore: scrypt n=1048576, r=8, p=1 needs 1024 MiB, above the ceiling of "
        "257 MiB (config scrypt_max_memory_mib)"
    )
    assert calls == []
    # configurable: a smaller device refuses what fits a larger one, and vice versa
    small = light_keystore(key)  # n = 2^10, r = 8: 1 MiB
    with pytest.raises(KeystoreError, match="above the ceiling of 0 MiB"):
        strict_decrypt_key(small, PASSWORD, max_memory=1 << 19, allow_weak_kdf=True)
    with pytest.raises(KeystoreError, match="MAC mismatch"):  # the spy's zeros are wrong
        strict_decrypt_key(doc, PASSWORD, scrypt=spy, max_memory=2 << 30)
    assert calls == [1]
