"""Regenerate records.json (valid records) and invalid.json (what the strict decoder refuses).

Run from the repository root: .venv/bin/python tests/vectors/records/make_vectors.py
The vectors are checked by tests/core/test_record.py against lightpost_gateway.record, against
lightpost.device (built independently) and against eth-account's recovery.
"""

from __future__ import annotations

import json
from pathlib import Path

from lightpost.core import rlp
from lightpost.core.keys import PrivateKey
from lightpost_gateway.record import (
    Domain,
    Kind,
    Record,
    birth_payload,
    death_for,
    encode_record,
    record_hash,
    sign_record,
    signing_preimage,
)

HERE = Path(__file__).resolve().parent
KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
"""eth-account's documented example key: a test key, never use it for anything real."""
DOMAIN = Domain(chain_id=31337, anchor=bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))


def _chain() -> list[tuple[str, Record]]:
    out: list[tuple[str, Record]] = []
    birth = Record(kind=Kind.BIRTH, stream=b"", seq=0, prev=bytes(32), payload=birth_payload(60, 0))
    out.append(("birth at seq 0 (a new device): cadence 60 s, nothing retained", birth))
    out.append(
        (
            "death notice (MQTT will) of that birth: not a link of the chain",
            death_for(birth, DOMAIN),
        )
    )
    head = record_hash(birth, DOMAIN)
    r1 = Record(
        kind=Kind.DATA,
        stream=b"temp",
        seq=1,
        prev=head,
        time_ms=1767225600000,
        content_type=2,
        payload=b'{"c":21.5}',
    )
    out.append(("reading, JSON, with a time", r1))
    r2 = Record(
        kind=Kind.DATA,
        stream=b"temp",
        seq=2,
        prev=record_hash(r1, DOMAIN),
        content_type=1,
        payload=b"21.4 C",
    )
    out.append(("reading, text, no time", r2))
    b2 = Record(
        kind=Kind.BIRTH,
        stream=b"",
        seq=3,
        prev=record_hash(r2, DOMAIN),
        payload=birth_payload(60, 1),
    )
    out.append(("birth after a reconnect: seqs 1-2 retained, to be republished", b2))
    return out


def _vector(note: str, record: Record) -> dict[str, object]:
    signed = sign_record(record, DOMAIN, PrivateKey.from_hex(KEY))
    return {
        "note": note,
        "kind": int(record.kind),
        "stream": record.stream.hex(),
        "seq": record.seq,
        "prev": record.prev.hex(),
        "time_ms": record.time_ms,
        "content_type": record.content_type,
        "payload": record.payload.hex(),
        "preimage": signing_preimage(record, DOMAIN).hex(),
        "hash": record_hash(record, DOMAIN).hex(),
        "signature": signed.signature.to_bytes().hex(),
        "wire": encode_record(signed).hex(),
    }


def _invalid(valid_wire: bytes) -> list[dict[str, str]]:
    fields = rlp.decode(valid_wire)
    assert isinstance(fields, list)

    def with_field(i: int, value: object) -> str:
        items: list[object] = list(fields)
        items[i] = value
        return rlp.encode(items).hex()  # type: ignore[arg-type]

    sig = fields[8]
    assert isinstance(sig, bytes)
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    high_s = sig[:32] + (n - int.from_bytes(sig[32:64], "big")).to_bytes(32, "big") + sig[64:]
    return [
        {"why": "trailing byte", "wire": valid_wire.hex() + "00"},
        {"why": "truncated", "wire": valid_wire[:-1].hex()},
        {"why": "8 fields", "wire": rlp.encode(fields[:8]).hex()},  # type: ignore[arg-type]
        {"why": "version 2", "wire": with_field(0, 2)},
        {"why": "unknown kind 3", "wire": with_field(1, 3)},
        {"why": "seq with a leading zero byte", "wire": with_field(3, b"\x00\x01")},
        {"why": "seq of 9 bytes", "wire": with_field(3, 1 << 64)},
        {"why": "prev of 31 bytes", "wire": with_field(4, bytes(31))},
        {"why": "stream of 33 bytes", "wire": with_field(2, b"s" * 33)},
        {"why": "payload of 1025 bytes", "wire": with_field(7, b"p" * 1025)},
        {"why": "data record without a stream", "wire": with_field(2, b"")},
        {"why": "content type of 3 bytes", "wire": with_field(6, 1 << 16)},
        {"why": "high s (EIP-2)", "wire": with_field(8, high_s)},
        {"why": "signature of 64 bytes", "wire": with_field(8, sig[:64])},
        {"why": "recovery id 2", "wire": with_field(8, sig[:64] + b"\x02")},
        {"why": "nested list in a field", "wire": with_field(7, [b"x"])},
        {"why": "longer than MAX_RECORD_BYTES", "wire": with_field(7, b"p" * 1100)},
        {"why": "not a list", "wire": rlp.encode(b"record").hex()},
        {"why": "seq 0 with a non-zero prev", "wire": with_field(3, 0)},
    ]


def main() -> None:
    vectors = [_vector(note, r) for note, r in _chain()]
    doc = {
        "key": KEY,
        "address": PrivateKey.from_hex(KEY).checksum_address,
        "chain_id": DOMAIN.chain_id,
        "anchor": "0x" + DOMAIN.anchor.hex(),
        "records": vectors,
    }
    (HERE / "records.json").write_text(json.dumps(doc, indent=1) + "\n")
    invalid = _invalid(bytes.fromhex(str(vectors[2]["wire"])))
    (HERE / "invalid.json").write_text(json.dumps(invalid, indent=1) + "\n")


if __name__ == "__main__":
    main()
