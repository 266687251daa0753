"""Fuzzing every lightpost decoder (scenario 7 of `make reliability`).

Each :class:`Target` names one decoder, a few valid encodings (seeds) and how to feed
it. Inputs are generated deterministically from (target, seed, chunk, index): a quarter
are random values (random bytes, or random JSON values for the JSON-RPC decoders), the
rest are 1-4 mutations of a valid encoding (bit flips, interesting bytes, deletions,
insertions, duplications, truncations, splices; for JSON: dropped keys, wrong types,
flipped hex nibbles, huge numbers). A *crash* is any exception that is not one of
lightpost's own (:class:`lightpost.errors.LightpostError`): a decoder must either
return a value or refuse with a lightpost error.

Structured decoders that take several arguments (an inbox log, a trie proof) are fed
through an RLP frame of their arguments, so byte mutations reach them; a frame that does
not decode is a refusal like any other (an RLP error is a lightpost error).

Chunks run in a ``multiprocessing`` pool (one worker per core).
"""

from __future__ import annotations

import copy
import hashlib
import json
import multiprocessing
import random
import signal
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightpost.core import rlp
from lightpost.core.envelope import (
    Chunk,
    Post,
    Record,
    channel_id,
    decode_post,
    encode_post,
    message_from_record,
)
from lightpost.core.header import decode_header, encode_header, verify_header
from lightpost.core.inbox import decode_post_log, encode_post_log, inbox_calldata
from lightpost.core.keys import PrivateKey
from lightpost.core.keystore import decrypt_key
from lightpost.core.receipts import (
    Log,
    Receipt,
    decode_receipt,
    encode_receipt,
    logs_bloom,
    receipt_from_rpc,
)
from lightpost.core.trie import (
    Account,
    check_eth_get_proof,
    decode_account,
    encode_account,
    make_proof,
    trie_root,
    verify_proof,
)
from lightpost.core.tx import (
    AccessListTx,
    DynamicFeeTx,
    LegacyTx,
    decode_transaction,
    sign_transaction,
    transaction_from_rpc,
)
from lightpost.errors import ConfigError, DecodingError, LightpostError
from lightpost.node.config import parse_config
from lightpost_agent.command import (
    Command,
    CommandResult,
    Reason,
    Status,
    UpdateManifest,
    decode_command,
    decode_result,
    encode_command,
    encode_result,
)
from lightpost_agent.command import (
    Target as CommandTarget,
)
from lightpost_operator.keywrite import encrypt_key

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT.parent / "shared" / "vectors"
"""The shared conformance vectors (optional: they add real anvil JSON-RPC seeds)."""

CHAIN_ID = 31337
"""anvil's chain id (the decoders check it)."""

RANDOM_SHARE = 0.25
"""Share of inputs that are random values rather than mutations of a valid encoding."""

MAX_RANDOM_BYTES = 300
"""Longest random input."""

MAX_SAMPLES = 3
"""Crash samples kept per chunk (with their input, for a reproducer)."""

SAMPLE_CHARS = 2000
"""Longest rendering of a crashing input kept in a sample."""

INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0x81, 0xB7, 0xB8, 0xBF, 0xC0, 0xC1, 0xF7, 0xF8, 0xFF)
"""Byte values at the RLP/length boundaries."""

KEY = PrivateKey.from_hex("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
"""anvil dev account #1 (public test mnemonic): signs the seed transactions."""

INBOX = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
"""The inbox address of the seeds (anvil's first contract address)."""


def _fake_scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # The keystore *parser* is under test, not scrypt: a cheap stand-in keeps a million
    # inputs affordable (and a mutated n cannot make one input take minutes).
    return hashlib.sha256(password + salt + bytes([n % 251, r % 251, p % 251])).digest()[:dklen]


# --- seeds --------------------------------------------------------------------------------


def _anvil_vector() -> dict[str, Any] | None:
    path = VECTORS / "anvil" / "block-2-mixed-types.json"
    return json.loads(path.read_text()) if path.exists() else None


def _signed_txs() -> list[bytes]:
    common = {"nonce": 7, "gas": 90_000, "to": INBOX, "value": 0, "data": b"\x43" * 70}
    txs = [
        LegacyTx(gas_price=10**9, chain_id=CHAIN_ID, **common),
        AccessListTx(
            chain_id=CHAIN_ID,
            gas_price=10**9,
            access_list=((INBOX, (b"\x01" * 32,)),),
            **common,
        ),
        DynamicFeeTx(
            chain_id=CHAIN_ID,
            max_priority_fee_per_gas=10**9,
            max_fee_per_gas=10**11,
            access_list=(),
            **common,
        ),
    ]
    return [sign_transaction(tx, KEY).raw for tx in txs]


def _posts() -> list[bytes]:
    chan = channel_id("fuzz")
    plain = Record(seq=3, timestamp=1_767_225_600_000, content_type=1, payload=b"21.5 C")
    chunk = Record(
        seq=4,
        timestamp=1_767_225_600_001,
        content_type=0,
        payload=b"\x00\x01" * 20,
        chunk=Chunk(index=0, count=2, content_hash=b"\x22" * 32),
    )
    return [
        encode_post(Post(channel=chan, recipient=None, records=(plain,))),
        encode_post(Post(channel=chan, recipient=b"\x11" * 20, records=(plain, chunk))),
        # version 2: the same records as one deflate stream
        encode_post(Post(channel=chan, recipient=None, records=(plain, chunk), deflated=True)),
    ]


def _inbox_logs() -> list[bytes]:
    out = []
    for i, post in enumerate(_posts()):
        calldata = inbox_calldata(post[:32], None if i == 0 else b"\x11" * 20, post[64:])
        topics, data = encode_post_log(KEY.address, calldata, i + 1)
        out.append(rlp.encode([INBOX, list(topics), data]))
    return out


def _receipts() -> list[bytes]:
    log = Log(address=INBOX, topics=(b"\x01" * 32, b"\x02" * 32), data=b"\x03" * 40)
    out = []
    for tx_type in (0, 2):
        r = Receipt(
            tx_type=tx_type,
            cumulative_gas_used=52_000,
            logs_bloom=logs_bloom([log]),
            logs=(log,),
            status=1,
        )
        out.append(encode_receipt(r))
    return out


def _commands() -> list[bytes]:
    manifest = UpdateManifest(
        digest=hashlib.sha256(b"image").digest(), size=5, version=(2, 0), device_class="valve-v2"
    )
    base = {"command_seq": 5, "not_before": 1_767_225_600, "expiry": 1_767_226_200}
    return [
        encode_command(
            Command(
                name="set",
                args=(("valve-1", "40"),),
                target=CommandTarget(address=b"\x11" * 20),
                **base,
            )
        ),
        encode_command(
            Command(
                name="update",
                target=CommandTarget(device_class="valve-v2"),
                manifest=manifest,
                **base,
            )
        ),
    ]


def _results() -> list[bytes]:
    ctl = b"\x22" * 20
    return [
        encode_result(
            CommandResult(controller=ctl, command_seq=5, status=Status.EXECUTED, reason=Reason.OK)
        ),
        encode_result(
            CommandResult(
                controller=ctl,
                command_seq=6,
                status=Status.REFUSED,
                reason=Reason.EXPIRED,
                output="too late",
            )
        ),
    ]


def _keystores() -> list[bytes]:
    counter = iter(range(1, 1 << 30))

    def randbytes(n: int) -> bytes:
        return hashlib.sha256(str(next(counter)).encode()).digest()[:n].ljust(n, b"\x05")

    docs = [
        encrypt_key(
            KEY, "pw", randbytes=randbytes, scrypt_n=2, scrypt_r=8, scrypt_p=1, scrypt=_fake_scrypt
        ),
        encrypt_key(KEY, "pw", randbytes=randbytes, kdf="pbkdf2", pbkdf2_iterations=1),
    ]
    return [json.dumps(d).encode() for d in docs]


def _proofs() -> list[bytes]:
    items = {hashlib.sha256(bytes([i])).digest(): bytes([i + 1]) * (1 + i % 40) for i in range(40)}
    root = trie_root(items)
    out = []
    for key in [*list(items)[:3], b"\x77" * 32]:  # three present, one absent
        out.append(rlp.encode([root, key, make_proof(items, key)]))
    return out


def _accounts() -> list[bytes]:
    return [
        encode_account(
            Account(nonce=3, balance=10**18, storage_root=b"\x56" * 32, code_hash=b"\xc5" * 32)
        )
    ]


def _configs() -> list[bytes]:
    text = """chain_id = 31337
endpoints = ["http://127.0.0.1:8545", "http://127.0.0.1:8546"]
quorum = 2
keystore = "device.keystore.json"
password_file = "device.password"
data_dir = "data"
mode = "channel"
inbox = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
finality_depth = 4

[fees]
max_fee_gwei = 100
priority_fee_gwei = 1

[send]
batch_bytes = 4096
max_delay_s = 1.0

[channels.devnet]
trusted = ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"]
"""
    return [text.encode()]


def _json_seeds(kind: str) -> list[Any]:
    vec = _anvil_vector()
    if vec is None:
        return []
    if kind == "header":
        out = []
        for name in ("block", "block_1", "genesis"):
            block = dict(vec[name])
            block["transactions"] = [
                t["hash"] if isinstance(t, dict) else t for t in block.get("transactions", [])
            ]
            out.append(block)
        return out
    if kind == "receipt":
        return list(vec["receipts"])
    if kind == "tx":
        return [t for t in vec["block"]["transactions"] if isinstance(t, dict)]
    if kind == "proof":
        return [(vec["block"]["stateRoot"], p) for p in vec["proofs_at_block_2"].values()]
    raise ValueError(kind)


# --- decoders under test -------------------------------------------------------------------


def _run_post(data: bytes) -> object:
    post = decode_post(data)
    return [message_from_record(r) for r in post.records if r.chunk is None]


def _bad_frame() -> DecodingError:
    # The harness's own frame around a decoder's arguments did not decode: a refusal.
    return DecodingError("fuzz frame", "not [address, [topics], data] / [root, key, [nodes]]")


def _run_inbox_log(data: bytes) -> object:
    frame = rlp.decode(data)
    if not (isinstance(frame, list) and len(frame) == 3 and isinstance(frame[1], list)):
        raise _bad_frame()
    address, topics, body = frame
    if not isinstance(address, bytes) or not isinstance(body, bytes):
        raise _bad_frame()
    if not all(isinstance(t, bytes) for t in topics):
        raise _bad_frame()
    return decode_post_log(address, topics, body, inbox=INBOX)  # type: ignore[arg-type]


def _run_trie_proof(data: bytes) -> object:
    frame = rlp.decode(data)
    if not (isinstance(frame, list) and len(frame) == 3 and isinstance(frame[2], list)):
        raise _bad_frame()
    root, key, nodes = frame
    if not isinstance(root, bytes) or not isinstance(key, bytes):
        raise _bad_frame()
    return verify_proof(root, key, nodes, kind="fuzz")  # type: ignore[arg-type]


def _run_keystore(data: bytes) -> object:
    return decrypt_key(data, "pw", scrypt=_fake_scrypt, allow_weak_kdf=True)  # n=2, c=1 seeds


def _run_config(data: bytes) -> object:
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        raise ConfigError("not TOML") from None  # what load_config does with these
    return parse_config(raw, path=Path("/nonexistent/device.toml"), env={})


def _run_proof_json(value: Any) -> object:
    # [stateRoot of the block (agreed elsewhere), the eth_getProof answer]
    if not (isinstance(value, list | tuple) and len(value) == 2 and isinstance(value[0], str)):
        raise _bad_frame()
    state_root, obj = value
    try:
        root = bytes.fromhex(state_root[2:])
    except ValueError:
        raise _bad_frame() from None
    if len(root) != 32:
        raise _bad_frame()
    return check_eth_get_proof(root, obj)


@dataclass(frozen=True)
class Target:
    """One decoder: its name, input kind (``bytes`` or ``json``), seeds and entry point."""

    name: str
    what: str
    kind: str
    seeds: Callable[[], list[Any]]
    run: Callable[[Any], object]


TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target(
            "rlp",
            "core.rlp.decode",
            "bytes",
            lambda: [
                rlp.encode([b"x" * 60, [1, 2**64]]),
                *_signed_txs()[:1],
                rlp.encode([b"", [b"a", [b"bc" * 40]], 2**70]),
            ],
            rlp.decode,
        ),
        Target(
            "tx",
            "core.tx.decode_transaction (+ sender recovery)",
            "bytes",
            _signed_txs,
            lambda b: decode_transaction(b, chain_id=CHAIN_ID),
        ),
        Target(
            "tx-json",
            "core.tx.transaction_from_rpc",
            "json",
            lambda: _json_seeds("tx"),
            lambda v: transaction_from_rpc(v, chain_id=CHAIN_ID),
        ),
        Target(
            "post", "core.envelope.decode_post (+ message_from_record)", "bytes", _posts, _run_post
        ),
        Target("inbox-log", "core.inbox.decode_post_log", "bytes", _inbox_logs, _run_inbox_log),
        Target("receipt", "core.receipts.decode_receipt", "bytes", _receipts, decode_receipt),
        Target(
            "receipt-json",
            "core.receipts.receipt_from_rpc",
            "json",
            lambda: _json_seeds("receipt"),
            receipt_from_rpc,
        ),
        Target(
            "header",
            "core.header.decode_header",
            "bytes",
            lambda: [encode_header(verify_header(h)) for h in _json_seeds("header")],
            decode_header,
        ),
        Target(
            "header-json",
            "core.header.verify_header",
            "json",
            lambda: _json_seeds("header"),
            verify_header,
        ),
        Target("command", "core.command.decode_command", "bytes", _commands, decode_command),
        Target("result", "core.command.decode_result", "bytes", _results, decode_result),
        Target(
            "keystore", "core.keystore.decrypt_key (JSON text)", "bytes", _keystores, _run_keystore
        ),
        Target("trie-proof", "core.trie.verify_proof", "bytes", _proofs, _run_trie_proof),
        Target(
            "eth-getproof",
            "core.trie.check_eth_get_proof",
            "json",
            lambda: _json_seeds("proof"),
            _run_proof_json,
        ),
        Target("account", "core.trie.decode_account", "bytes", _accounts, decode_account),
        Target("config", "node.config.parse_config (TOML text)", "bytes", _configs, _run_config),
    ]
}
"""Every decoder under fuzz, by name."""


# --- generators ----------------------------------------------------------------------------


def mutate_bytes(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """``data`` with 1-4 random mutations."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        n = len(buf)
        pos = rng.randrange(n + 1)
        if op == 0 and n:
            buf[pos % n] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            buf[pos % n] = rng.choice(INTERESTING)
        elif op == 2 and n:
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 3:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 4 and n:
            start = rng.randrange(n)
            buf[pos:pos] = buf[start : start + rng.randint(1, 64)]
        elif op == 5:
            del buf[pos:]
        elif op == 6:
            other = rng.choice(pool)
            buf[pos:] = other[rng.randrange(len(other) + 1) :]
        elif op == 7 and n:
            buf[pos % n : pos % n + 4] = rng.choice((b"\xff\xff\xff\xff", b"\x00\x00\x00\x00"))
        elif op == 8 and n:
            buf[pos % n] = (buf[pos % n] + rng.choice((-1, 1))) % 256
    return bytes(buf)


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value, biased towards what JSON-RPC decoders meet."""
    choice = rng.randrange(12 if depth < 3 else 9)
    if choice == 0:
        return None
    if choice == 1:
        return rng.random() < 0.5
    if choice == 2:
        return rng.choice((0, -1, 1, 2**64, 2**256, -(2**255), 10**80))
    if choice == 3:
        return rng.random() * 1e30
    if choice == 4:
        return "0x" + rng.randbytes(rng.choice((0, 1, 20, 32, 33, 100))).hex()
    if choice == 5:
        return "0x" + "f" * rng.randint(0, 80) + rng.choice(("", "g", "0", " "))
    if choice == 6:
        return rng.choice(("", "0x", "0X1", "0x01", "latest", "\u00e9", "0x-1", "1e3"))
    if choice == 7:
        return rng.randbytes(rng.randint(0, 10)).decode("latin-1")
    if choice == 8:
        return hex(rng.getrandbits(rng.choice((8, 64, 256, 300))))
    if choice == 9:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = ("type", "hash", "number", "data", "topics", "logs", "address", "value", "input")
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _containers(value: Any) -> Iterator[Any]:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict) and v:
            yield v
            stack.extend(v.values())
        elif isinstance(v, list) and v:
            yield v
            stack.extend(v)


def mutate_json(value: Any, rng: random.Random) -> Any:
    """A deep copy of ``value`` with 1-3 structural mutations."""
    out = copy.deepcopy(value)
    if isinstance(out, tuple):
        out = list(out)
    for _ in range(rng.randint(1, 3)):
        containers = list(_containers(out))
        if not containers:
            return random_json(rng)
        box = rng.choice(containers)
        key: Any = rng.choice(list(box)) if isinstance(box, dict) else rng.randrange(len(box))
        old = box[key]
        op = rng.randrange(6)
        if op == 0:
            del box[key]
        elif op == 1:
            box[key] = random_json(rng)
        elif op == 2 and isinstance(old, str) and len(old) > 2:
            i = rng.randrange(2, len(old))
            box[key] = old[:i] + rng.choice("0123456789abcdefx") + old[i + 1 :]
        elif op == 3 and isinstance(old, str):
            box[key] = old[: rng.randrange(len(old) + 1)]
        elif op == 4 and isinstance(old, str) and old.startswith("0x"):
            box[key] = old + rng.choice(("0", "00", "ff" * 32, "1"))
        elif op == 5 and isinstance(box, list):
            box.insert(key, copy.deepcopy(old))
        else:
            box[key] = random_json(rng)
    return out


def generate(target: Target, seeds: list[Any], rng: random.Random) -> Any:
    """One input for ``target``."""
    if target.kind == "bytes":
        if not seeds or rng.random() < RANDOM_SHARE:
            return rng.randbytes(rng.randint(0, MAX_RANDOM_BYTES))
        return mutate_bytes(rng.choice(seeds), rng, seeds)
    if not seeds or rng.random() < RANDOM_SHARE:
        return random_json(rng)
    return mutate_json(rng.choice(seeds), rng)


# --- running -------------------------------------------------------------------------------


@dataclass
class ChunkResult:
    """What one chunk of one target produced."""

    target: str
    inputs: int = 0
    accepted: int = 0
    refused: int = 0
    crashes: int = 0
    seconds: float = 0.0
    samples: list[dict[str, Any]] = field(default_factory=list)


_SEEDS: dict[str, list[Any]] = {}


def _seeds(target: Target) -> list[Any]:
    if target.name not in _SEEDS:
        _SEEDS[target.name] = target.seeds()
    return _SEEDS[target.name]


def _render(value: Any) -> str:
    text = value.hex() if isinstance(value, bytes) else json.dumps(value, default=repr)
    return text[:SAMPLE_CHARS]


def run_chunk(name: str, seed: int, chunk: int, count: int) -> ChunkResult:
    """Fuzz target ``name`` with ``count`` inputs of chunk ``chunk`` (deterministic)."""
    target = TARGETS[name]
    seeds = _seeds(target)
    rng = random.Random(f"{name}/{seed}/{chunk}")
    out = ChunkResult(target=name)
    started = time.perf_counter()
    for index in range(count):
        value = generate(target, seeds, rng)
        try:
            target.run(value)
        except LightpostError:
            out.refused += 1
        except Exception as exc:  # anything else is a crash: that is what we count
            out.crashes += 1
            if len(out.samples) < MAX_SAMPLES:
                out.samples.append(
                    {
                        "target": name,
                        "seed": seed,
                        "chunk": chunk,
                        "index": index,
                        "error": f"{type(exc).__name__}: {exc}"[:300],
                        "input": _render(value),
                    }
                )
        else:
            out.accepted += 1
    out.inputs = count
    out.seconds = time.perf_counter() - started
    return out


def _run_chunk_args(args: tuple[str, int, int, int]) -> ChunkResult:
    return run_chunk(*args)


@dataclass
class FuzzResult:
    """Totals of one target over all chunks."""

    target: str
    what: str
    inputs: int = 0
    accepted: int = 0
    refused: int = 0
    crashes: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Inputs per wall-clock second (all workers)."""
        return self.inputs / self.wall_seconds if self.wall_seconds else 0.0


def _worker_init() -> None:
    # Workers leave interruption to the parent, which terminates the pool (SIGTERM).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


CHUNK = 20_000
"""Inputs per work unit handed to a worker."""


def fuzz(
    names: list[str],
    per_target: int,
    *,
    seed: int = 0,
    workers: int | None = None,
    progress: Callable[[str], None] = lambda _line: None,
) -> list[FuzzResult]:
    """Fuzz each target in ``names`` with ``per_target`` inputs, ``workers`` processes."""
    workers = workers or multiprocessing.cpu_count()
    results = []
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_worker_init) as pool:
        for name in names:
            total = FuzzResult(target=name, what=TARGETS[name].what)
            sizes = [CHUNK] * (per_target // CHUNK)
            if per_target % CHUNK:
                sizes.append(per_target % CHUNK)
            jobs = [(name, seed, i, n) for i, n in enumerate(sizes)]
            started = time.perf_counter()
            for part in pool.imap_unordered(_run_chunk_args, jobs):
                total.inputs += part.inputs
                total.accepted += part.accepted
                total.refused += part.refused
                total.crashes += part.crashes
                total.cpu_seconds += part.seconds
                total.samples.extend(part.samples[: MAX_SAMPLES - len(total.samples)])
                elapsed = time.perf_counter() - started
                progress(
                    f"{name}: {total.inputs:,}/{per_target:,} inputs, "
                    f"{total.crashes} crashes, {total.inputs / elapsed:,.0f}/s"
                )
            total.wall_seconds = time.perf_counter() - started
            results.append(total)
            progress(
                f"{name}: done, {total.inputs:,} inputs, {total.crashes} crashes, "
                f"{total.rate:,.0f}/s"
            )
    return results


def regenerate(name: str, seed: int, chunk: int, index: int) -> Any:
    """The input ``index`` of chunk ``chunk`` (a crash sample's coordinates)."""
    target = TARGETS[name]
    seeds = _seeds(target)
    rng = random.Random(f"{name}/{seed}/{chunk}")
    for _ in range(index):
        generate(target, seeds, rng)
    return generate(target, seeds, rng)
