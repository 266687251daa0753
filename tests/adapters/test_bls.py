"""BLS12-381 (the lightpost[beacon] extra) on every case of ../shared/vectors/beacon/bls
(bls12-381-tests, names as in consensus-spec-tests general/phase0/bls). FastAggregateVerify,
Verify and key/signature deserialization go through lightpost_beacon.bls, the light client's
verifier; sign, aggregate, aggregate_verify, batch_verify and hash_to_G2 exercise the same
library directly, so every case of the folder is checked against the extra as installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import VECTORS, vector_path
from tests.core.beacon_vectors import read_yaml

arkworks = pytest.importorskip("py_arkworks_bls12381", reason="the lightpost[beacon] extra")
from lightpost_beacon.bls import DST, ArkworksBls, decode_point  # noqa: E402

BLS = ArkworksBls(arkworks)
BLS_DIR = VECTORS / "beacon" / "bls"


def _cases(handler: str) -> list[str]:
    return sorted(p.name for p in (BLS_DIR / handler).glob("*.yaml")) or ["missing"]


def _load(handler: str, name: str) -> tuple[Any, Any]:
    case = read_yaml(vector_path("beacon", "bls", handler, name))
    return case["input"], case["output"]


def b(h: str) -> bytes:
    return bytes.fromhex(h[2:])


def _g2(raw: str) -> Any:
    return arkworks.G2Point.from_compressed_bytes(b(raw))


@pytest.mark.parametrize("name", _cases("fast_aggregate_verify"))
def test_fast_aggregate_verify(name: str) -> None:
    args, expected = _load("fast_aggregate_verify", name)
    keys = [b(k) for k in args["pubkeys"]]
    assert BLS.fast_aggregate_verify(keys, b(args["message"]), b(args["signature"])) is expected


@pytest.mark.parametrize("name", _cases("verify"))
def test_verify(name: str) -> None:
    # Verify(pk, m, s) is FastAggregateVerify([pk], m, s)
    args, expected = _load("verify", name)
    got = BLS.fast_aggregate_verify([b(args["pubkey"])], b(args["message"]), b(args["signature"]))
    assert got is expected


@pytest.mark.parametrize("name", _cases("deserialization_G1"))
def test_deserialization_g1(name: str) -> None:
    args, expected = _load("deserialization_G1", name)
    assert _decodes(arkworks.G1Point, b(args["pubkey"])) is expected
    if not expected:  # and so a key that does not decode is never valid
        assert not BLS.is_valid_pubkey(b(args["pubkey"]))


def _decodes(point_type: Any, raw: bytes) -> bool:
    try:
        decode_point(point_type, raw)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("name", _cases("deserialization_G2"))
def test_deserialization_g2(name: str) -> None:
    args, expected = _load("deserialization_G2", name)
    assert BLS.is_valid_signature(b(args["signature"])) is expected
    assert _decodes(arkworks.G2Point, b(args["signature"])) is expected


def _sign(sk: bytes, message: bytes) -> bytes | None:
    secret = int.from_bytes(sk, "big")
    if secret == 0:
        return None
    point = arkworks.G2Point.hash_to_curve(message, DST) * arkworks.Scalar(secret)
    return bytes(point.to_compressed_bytes())


@pytest.mark.parametrize("name", _cases("sign"))
def test_sign(name: str) -> None:
    args, expected = _load("sign", name)
    got = _sign(b(args["privkey"]), b(args["message"]))
    assert (None if got is None else "0x" + got.hex()) == expected


@pytest.mark.parametrize("name", _cases("aggregate"))
def test_aggregate(name: str) -> None:
    args, expected = _load("aggregate", name)
    if not args:
        assert expected is None
        return
    total = arkworks.G2Point.identity()
    for sig in args:
        total = total + _g2(sig)
    assert "0x" + bytes(total.to_compressed_bytes()).hex() == expected


def _aggregate_verify(keys: list[bytes], messages: list[bytes], signature: bytes) -> bool:
    if not keys or len(keys) != len(messages) or not all(map(BLS.is_valid_pubkey, keys)):
        return False
    if not BLS.is_valid_signature(signature):
        return False
    g1s = [arkworks.G1Point.from_compressed_bytes(k) for k in keys] + [-arkworks.G1Point()]
    g2s = [arkworks.G2Point.hash_to_curve(m, DST) for m in messages]
    g2s.append(arkworks.G2Point.from_compressed_bytes(signature))
    return bool(arkworks.GT.pairing_check(g1s, g2s))


@pytest.mark.parametrize("name", _cases("aggregate_verify"))
def test_aggregate_verify(name: str) -> None:
    args, expected = _load("aggregate_verify", name)
    keys = [b(k) for k in args["pubkeys"]]
    messages = [b(m) for m in args["messages"]]
    assert _aggregate_verify(keys, messages, b(args["signature"])) is expected


@pytest.mark.parametrize("name", _cases("batch_verify"))
def test_batch_verify(name: str) -> None:
    args, expected = _load("batch_verify", name)
    triples = zip(args["pubkeys"], args["messages"], args["signatures"], strict=True)
    got = all(BLS.fast_aggregate_verify([b(k)], b(m), b(s)) for k, m, s in triples)
    assert got is expected


HASH_TO_G2_DST = b"QUUX-V01-CS02-with-BLS12381G2_XMD:SHA-256_SSWU_RO_"
"""The DST of the hash-to-curve draft's test vectors (RFC 9380, J.10.1), used by these cases."""


@pytest.mark.parametrize("name", _cases("hash_to_G2"))
def test_hash_to_g2(name: str) -> None:
    args, expected = _load("hash_to_G2", name)
    point = arkworks.G2Point.hash_to_curve(args["msg"].encode(), HASH_TO_G2_DST)
    xy = bytes(point.to_xy_bytes_be()).hex()
    x0, x1 = (p[2:].rjust(96, "0") for p in expected["x"].split(","))
    y0, y1 = (p[2:].rjust(96, "0") for p in expected["y"].split(","))
    assert xy in (x1 + x0 + y1 + y0, x0 + x1 + y0 + y1)


def test_every_bls_folder_is_covered() -> None:
    handlers = {p.name for p in Path(vector_path("beacon", "bls")).iterdir() if p.is_dir()}
    tested = {
        "fast_aggregate_verify", "verify", "deserialization_G1", "deserialization_G2", "sign",
        "aggregate", "aggregate_verify", "batch_verify", "hash_to_G2",
    }  # fmt: skip
    assert handlers <= tested
