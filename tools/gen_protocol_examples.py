"""Generate the worked envelope examples of docs/protocol.md and their JSON test vectors.

Builds a few deterministic posts with lightpost.core.envelope (a single text reading, a
batch of three readings, a chunked direct message, a compressed message), then writes

- docs/protocol.md, between the markers <!-- BEGIN GENERATED EXAMPLES --> and
  <!-- END GENERATED EXAMPLES -->: hex and an annotated byte-by-byte breakdown, and
- tests/core/vectors/envelope_examples.json: the inputs and the encoded posts.

Usage: .venv/bin/python tools/gen_protocol_examples.py [--check]
With --check nothing is written; exit status 1 if either file is out of date.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reports import replace_section

from lightpost.core.envelope import (
    CHANNEL_ID_SIZE,
    DIRECT_CHANNEL_NAME,
    FLAG_CHUNK,
    POST_HEADER_SIZE,
    ContentType,
    Message,
    Post,
    channel_id,
    decode_post,
    encode_post,
    pack_messages,
    post_body_size,
    post_calldata_tokens,
    post_gas,
)
from lightpost.core.gas import calldata_tokens
from lightpost.core.hashing import keccak256

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "protocol.md"
VECTORS = ROOT / "tests" / "core" / "vectors" / "envelope_examples.json"
BEGIN = "<!-- BEGIN GENERATED EXAMPLES -->"
END = "<!-- END GENERATED EXAMPLES -->"

T0 = 1_767_225_600_000
"""2026-01-01T00:00:00Z in milliseconds: the examples' first timestamp."""
MINUTE_MS = 60_000
RECIPIENT = bytes.fromhex("70997970c51812dc3a010c7d01b50e0d17dc79c8")
"""anvil's well-known dev account #1 (public test mnemonic), used as a direct recipient."""
HEX_LINE_BYTES = 32
"""Bytes per line of a hex block (one EVM word)."""
PAYLOAD_SHOWN_BYTES = 24
"""Payload bytes shown in an annotation row; the hex block above it has all of them."""


def _firmware_fragment(size: int) -> bytes:
    """Deterministic incompressible bytes: a keccak256 counter stream."""
    out = b"".join(
        keccak256(b"lightpost example" + i.to_bytes(4, "big")) for i in range(size // 32 + 1)
    )
    return out[:size]


def _example(
    name: str,
    title: str,
    description: str,
    channel_name: str,
    recipient: bytes | None,
    max_post_bytes: int,
    messages: list[Message],
    *,
    version_1: bool = False,
) -> dict[str, Any]:
    posts = pack_messages(
        channel_id(channel_name), recipient, messages, max_post_bytes=max_post_bytes
    )
    if version_1:  # the same records in the clear, to show the record layout
        posts = [Post(channel=p.channel, recipient=p.recipient, records=p.records) for p in posts]
    return {
        "name": name,
        "title": title,
        "description": description,
        "channel_name": channel_name,
        "channel": channel_id(channel_name).hex(),
        "recipient": None if recipient is None else recipient.hex(),
        "max_post_bytes": max_post_bytes,
        "messages": [
            {
                "seq": m.seq,
                "timestamp": m.timestamp,
                "content_type": m.content_type,
                "payload": m.payload.hex(),
            }
            for m in messages
        ],
        "posts": [encode_post(p).hex() for p in posts],
    }


def build_examples() -> dict[str, Any]:
    """The examples as one JSON-ready document (deterministic for a given zlib build)."""
    channel = "greenhouse-1/temperature"
    readings = [
        Message(
            seq=2 + i,
            timestamp=T0 + (i + 1) * MINUTE_MS,
            content_type=ContentType.JSON,
            payload=json.dumps({"t": t}, separators=(",", ":")).encode(),
        )
        for i, t in enumerate((21.6, 21.8, 22.1))
    ]
    day = [{"h": h, "t": round(18 + 0.25 * h, 2), "rh": 60 - h} for h in range(24)]
    examples = [
        _example(
            "single-reading",
            "A single text reading",
            "One UTF-8 text message, broadcast on a channel.",
            channel,
            None,
            1024,
            [Message(seq=1, timestamp=T0, content_type=ContentType.TEXT, payload=b"21.5 C")],
        ),
        _example(
            "batch-of-three",
            "A batch of three readings in one post",
            "Three JSON readings one minute apart share one transaction (one header, "
            "three 22-byte record headers). Shown as version 1 to show the record layout; "
            "the encoder sends this batch as version 2 (next example), which costs fewer "
            "tokens.",
            channel,
            None,
            1024,
            readings,
            version_1=True,
        ),
        _example(
            "batch-deflated",
            "The same batch as version 2 (one DEFLATE stream)",
            "What `pack_messages` actually produces for the three readings: the record "
            "sequence of the previous example deflated as one stream after the version byte "
            "2. It is chosen because it has fewer EIP-7623 tokens than version 1.",
            channel,
            None,
            1024,
            readings,
        ),
        _example(
            "chunked-direct",
            "A chunked direct message",
            "A 100-byte octet-stream message to one recipient on the reserved direct channel, "
            "with max_post_bytes = 160: it does not fit one post (66 + 22 + 100 > 160), so "
            "it is cut into 32-byte chunks (160 - 66 - 62), one post each; the chunk "
            "content hash is keccak256 of the 100 bytes.",
            DIRECT_CHANNEL_NAME,
            RECIPIENT,
            160,
            [
                Message(
                    seq=7,
                    timestamp=T0 + 3_600_000,
                    content_type=ContentType.OCTET_STREAM,
                    payload=_firmware_fragment(100),
                )
            ],
        ),
        _example(
            "compressed",
            "A compressed message",
            "A day of hourly JSON readings: raw DEFLATE has fewer EIP-7623 tokens than the "
            "text, so the record carries the deflated bytes with the compressed flag.",
            "greenhouse-1/daily",
            None,
            1024,
            [
                Message(
                    seq=1,
                    timestamp=T0 + 86_400_000,
                    content_type=ContentType.JSON,
                    payload=json.dumps(day, separators=(",", ":")).encode(),
                )
            ],
        ),
    ]
    return {
        "format": "lightpost envelope versions 1 and 2 (docs/protocol.md, section Wire format)",
        "generator": "tools/gen_protocol_examples.py",
        "zlib_runtime_version": zlib.ZLIB_RUNTIME_VERSION,
        "examples": examples,
    }


# --- rendering ----------------------------------------------------------------------------


def _hex_block(data: bytes) -> str:
    lines = [data[i : i + HEX_LINE_BYTES].hex() for i in range(0, len(data), HEX_LINE_BYTES)]
    return "```hex\n" + "\n".join(lines) + "\n```"


def _shown(data: bytes, field: str) -> str:
    if field != "payload" or len(data) <= PAYLOAD_SHOWN_BYTES:
        return f"`{data.hex()}`"
    return f"`{data[:PAYLOAD_SHOWN_BYTES].hex()}…`"


def _payload_meaning(payload: bytes, content_type: int, compressed: bool, chunked: bool) -> str:
    if compressed or chunked or content_type not in (ContentType.TEXT, ContentType.JSON):
        kind = "deflated bytes" if compressed else "bytes"
        slice_note = " (a slice of the message)" if chunked else ""
        return f"{len(payload)} {kind}, {calldata_tokens(payload)} tokens{slice_note}"
    return "`" + payload.decode("utf-8").replace("|", "\\|") + "`"


def annotate(data: bytes, channel_name: str) -> list[tuple[int, bytes, str, str]]:
    """(offset, bytes, field, meaning) rows covering every byte of an encoded post."""
    post = decode_post(data)
    word = data[CHANNEL_ID_SIZE:64]
    rows = [
        (0, data[:32], "channel id", f'keccak256("{channel_name}")'),
        (
            32,
            word,
            "recipient word",
            "broadcast" if post.recipient is None else f"address 0x{word[12:].hex()}",
        ),
        (64, data[64:65], "magic", "'L'"),
        (65, data[65:66], "version", str(data[65])),
    ]
    if post.deflated:
        body = data[POST_HEADER_SIZE:]
        records = post_body_size(post) - POST_HEADER_SIZE
        as_v1 = post_calldata_tokens(dataclasses.replace(post, deflated=False))
        rows.append(
            (
                POST_HEADER_SIZE,
                body,
                "body",
                f"raw DEFLATE of {len(post.records)} records ({records} bytes, "
                f"{as_v1} tokens as "
                f"version 1); {len(body)} bytes, {calldata_tokens(body)} tokens",
            )
        )
        return rows
    offset = POST_HEADER_SIZE
    for n, record in enumerate(post.records, 1):
        fields: list[tuple[str, int, str]] = [
            (f"record {n}: seq", 8, str(record.seq)),
            ("timestamp (ms)", 8, str(record.timestamp)),
            ("content type", 1, ContentType(record.content_type).name.lower().replace("_", "-")),
            ("flags", 1, _flag_names(data[offset + 17])),
        ]
        if record.chunk is not None:
            fields += [
                ("chunk index", 4, str(record.chunk.index)),
                ("chunk count", 4, str(record.chunk.count)),
                ("content hash", 32, "keccak256 of the original payload"),
            ]
        fields.append(("payload length", 4, str(len(record.payload))))
        for field, size, meaning in fields:
            rows.append((offset, data[offset : offset + size], field, meaning))
            offset += size
        meaning = _payload_meaning(
            record.payload, record.content_type, record.compressed, record.chunk is not None
        )
        rows.append((offset, record.payload, "payload", meaning))
        offset += len(record.payload)
    assert offset == len(data)
    return rows


def _flag_names(flags: int) -> str:
    names = [name for bit, name in ((1, "compressed"), (FLAG_CHUNK, "chunk")) if flags & bit]
    return " + ".join(names) or "none"


def _leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def render_overhead_table() -> str:
    """Tokens of the 22-byte fixed record header vs an LEB128 header, for typical values."""
    cases = [(1, T0, 6), (1_000, T0, 40), (70_000, T0, 300), (2**32, T0, 1_000)]
    lines = [
        "| seq | timestamp (ms) | payload length | fixed: bytes / tokens "
        "| LEB128: bytes / tokens |",
        "|---:|---:|---:|---:|---:|",
    ]
    for seq, ts, length in cases:
        fixed = struct.pack(">QQBBI", seq, ts, ContentType.JSON, 0, length)
        varint = _leb128(seq) + _leb128(ts) + bytes((ContentType.JSON, 0)) + _leb128(length)
        lines.append(
            f"| {seq} | {ts} | {length} | {len(fixed)} / {calldata_tokens(fixed)} "
            f"| {len(varint)} / {calldata_tokens(varint)} |"
        )
    return "\n".join(lines)


def render_markdown(doc: dict[str, Any]) -> str:
    """The generated section of docs/protocol.md (a pure function of the JSON document)."""
    out = [
        "#### Record header cost: fixed width vs LEB128 varints",
        "",
        "Content type json, no flags; tokens = zero bytes + 4 x nonzero bytes (EIP-7623).",
        "",
        render_overhead_table(),
    ]
    for example in doc["examples"]:
        out += ["", f"#### Example: {example['title']}", "", example["description"], ""]
        for m in example["messages"]:
            payload = bytes.fromhex(m["payload"])
            if m["content_type"] in (ContentType.TEXT, ContentType.JSON):
                shown = f"`{payload.decode('utf-8')}`"
            else:
                shown = f"{len(payload)} bytes, keccak256 `{keccak256(payload).hex()}`"
            out.append(
                f"- message seq {m['seq']}, timestamp {m['timestamp']}, "
                f"content type {m['content_type']}, {len(payload)} bytes / "
                f"{calldata_tokens(payload)} tokens: {shown}"
            )
        posts = example["posts"]
        for i, post_hex in enumerate(posts, 1):
            data = bytes.fromhex(post_hex)
            post = decode_post(data)
            out += [
                "",
                f"Post {i} of {len(posts)}: {len(data)} bytes, "
                f"{post_calldata_tokens(post)} tokens, {post_gas(post)} gas as a plain "
                "transaction (EIP-7623 floor).",
                "",
                _hex_block(data),
                "",
                "| offset | bytes | field | value |",
                "|---:|---|---|---|",
            ]
            for offset, chunk, field, meaning in annotate(data, example["channel_name"]):
                out.append(f"| {offset} | {_shown(chunk, field)} | {field} | {meaning} |")
    return "\n".join(out)


def _check_posts(doc: dict[str, Any]) -> None:
    """Sanity: every post decodes and re-encodes to itself."""
    for example in doc["examples"]:
        for post_hex in example["posts"]:
            data = bytes.fromhex(post_hex)
            post: Post = decode_post(data)
            assert encode_post(post) == data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; write nothing")
    args = parser.parse_args(argv)
    doc = build_examples()
    _check_posts(doc)
    vectors_text = json.dumps(doc, indent=2) + "\n"
    doc_text = replace_section(DOC.read_text(encoding="utf-8"), render_markdown(doc), BEGIN, END)
    stale = [
        path
        for path, text in ((VECTORS, vectors_text), (DOC, doc_text))
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    if args.check:
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT)}", file=sys.stderr)
        return 1 if stale else 0
    VECTORS.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((VECTORS, vectors_text), (DOC, doc_text)):
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
