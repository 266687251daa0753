"""The channel-mode inbox contract mirrored in Python: calldata, storage, event, gas.

calldata = channel (32) || recipient word (32) || body (>= 1 byte), no ABI selector. Per (sender,
channel) the contract keeps ``acc = keccak256(acc || keccak256(calldata))`` and ``count``:
eth_getProof (EIP-1186) proves nothing omitted, reordered or altered. docs/protocol.md, "Inbox
contract"; source ``lightpost_operator/inbox.easm``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lightpost.core.hashing import keccak256
from lightpost.errors import DecodingError

__all__ = [
    "ACC_ZERO",
    "ADDRESS_BYTES",
    "BROADCAST_WORD",
    "CHANNEL_BYTES",
    "CREATE2_DEPLOYER",
    "EVENT_SIGNATURE",
    "EVENT_TOPIC",
    "HEADER_BYTES",
    "INBOX_ADDRESS",
    "INBOX_CODE_HASH",
    "INBOX_EXECUTION_GAS_BOUND_MAX_CALLDATA",
    "INBOX_EXECUTION_GAS_FIRST_POST",
    "INBOX_EXECUTION_GAS_FIXED",
    "INBOX_EXECUTION_GAS_PER_BYTE",
    "INBOX_INITCODE_HASH",
    "INBOX_SALT",
    "INDEX_BYTES",
    "MIN_CALLDATA_BYTES",
    "WORD_BYTES",
    "InboxPost",
    "accumulator_of",
    "accumulator_slots",
    "create2_address",
    "decode_post_log",
    "encode_post_log",
    "inbox_calldata",
    "inbox_execution_gas",
    "next_accumulator",
    "storage_key",
]

# --- layout ---

WORD_BYTES = 32
"""An EVM word: channel ids, recipient words, topics and the index are one word each."""

ADDRESS_BYTES = 20
"""An Ethereum address; the low 20 bytes of a sender or recipient word."""

CHANNEL_BYTES = WORD_BYTES
"""A channel id is an opaque 32-byte value (calldata bytes 0..32, topic 1)."""

HEADER_BYTES = 2 * WORD_BYTES
"""Channel id + recipient word: the part of the calldata the contract reads."""

MIN_CALLDATA_BYTES = HEADER_BYTES + 1
"""The contract reverts below this: the body must have at least one byte."""

INDEX_BYTES = WORD_BYTES
"""The event data starts with count_new as one big-endian word."""

BROADCAST_WORD = bytes(WORD_BYTES)
"""The recipient word of a broadcast (no single recipient)."""

ACC_ZERO = bytes(WORD_BYTES)
"""The accumulator of a (sender, channel) before its first post (an unset slot reads 0)."""

_SLOT_MODULUS = 2**256
"""Storage keys are 256-bit; ``key + 1`` wraps like the contract's ADD."""

_ADDRESS_PAD = bytes(WORD_BYTES - ADDRESS_BYTES)
"""The 12 zero bytes in front of an address inside a word."""

# --- event ---

EVENT_SIGNATURE = "LightpostPostV1(bytes32,address,address,uint256,bytes)"
"""Names the event; its data layout is lightpost's own (count || calldata), not ABI."""

EVENT_TOPIC = keccak256(EVENT_SIGNATURE.encode())
"""topic 0 of every inbox post: keccak256(EVENT_SIGNATURE) (a PUSH32 in the runtime)."""

# --- one address on every EVM chain (EIP-1014 CREATE2 through a keyless-deployed proxy) ---

CREATE2_DEPLOYER = bytes.fromhex("4e59b44847b379578588920ca78fbf26c0b4956c")
"""The deterministic deployment proxy (Arachnid/deterministic-deployment-proxy): at this address on
every chain that ran its keyless pre-signed deployment; calldata salt (32) || initcode."""

INBOX_SALT = keccak256(b"lightpost inbox v1")
"""The fixed CREATE2 salt of the inbox."""

INBOX_INITCODE_HASH = bytes.fromhex(
    "f720cebed316f9a3e80438cc67c220b04ea376a32896999b1f824ab609f02185"
)
"""keccak256 of the inbox initcode (lightpost_operator/inbox.json; a test recomputes it: a new
contract is a new protocol constant)."""

INBOX_CODE_HASH = bytes.fromhex("3d6a8a5f8175b2589c97d911f311cd2dfc53128179bd27ab104e2e838ce4bfe6")
"""keccak256 of the inbox runtime: the codeHash ``complete`` requires of the inbox account (a test
recomputes it from the artifact)."""


def create2_address(deployer: bytes, salt: bytes, initcode_hash: bytes) -> bytes:
    """EIP-1014: keccak256(0xff || deployer || salt || keccak256(initcode))[12:]."""
    return keccak256(b"\xff" + deployer + salt + initcode_hash)[WORD_BYTES - ADDRESS_BYTES :]


INBOX_ADDRESS = create2_address(CREATE2_DEPLOYER, INBOX_SALT, INBOX_INITCODE_HASH)
"""The inbox's address on every EVM chain: a constant of the protocol."""


_LOG_TOPICS = 4
"""LOG4: event topic, channel, sender word, recipient word."""

# --- gas (EIP-2929 / EIP-2200 / Yellow Paper costs of the opcodes the inbox runs) ---

_STRAIGHT_LINE_GAS = 171
"""Fixed costs of the simple opcodes on inbox.easm's success path (confirmed by
tests/integration/test_inbox_gas.py)."""

_COLD_SLOAD_GAS = 2_100
"""EIP-2929 COLD_SLOAD_COST: each of the two slots is read cold once."""

_SSTORE_RESET_GAS = 2_900
"""EIP-2929/EIP-2200: SSTORE of a warm slot from nonzero to another value."""

_SSTORE_SET_GAS = 20_000
"""EIP-2200 SSTORE_SET_GAS: a warm slot from zero to nonzero (a first post on a channel)."""

_KECCAK_GAS = 30
"""Yellow Paper G_keccak256 per KECCAK256 (SHA3) opcode."""

_KECCAK_WORD_GAS = 6
"""Yellow Paper G_keccak256word per 32-byte word hashed."""

_COPY_WORD_GAS = 3
"""Yellow Paper G_copy per word of CALLDATACOPY."""

_MEMORY_WORD_GAS = 3
"""Yellow Paper G_memory: memory cost is 3 x words + words^2 / 512."""

_MEMORY_QUAD_DIVISOR = 512
"""Yellow Paper: the quadratic memory term divides words^2 by 512."""

_LOG_GAS = 375
"""Yellow Paper G_log per LOG opcode."""

_LOG_TOPIC_GAS = 375
"""Yellow Paper G_logtopic per topic."""

_LOG_DATA_GAS = 8
"""Yellow Paper G_logdata per byte of event data."""

_SCRATCH_WORDS = 2
"""Memory words in front of the calldata copy (scratch for the two 64-byte hashes)."""

INBOX_EXECUTION_GAS_FIXED = 12_500
"""Bound of a non-first post's execution gas besides the per-byte part (exact:
:func:`inbox_execution_gas`; anvil 1.7.1)."""

INBOX_EXECUTION_GAS_FIRST_POST = INBOX_EXECUTION_GAS_FIXED + 2 * (
    _SSTORE_SET_GAS - _SSTORE_RESET_GAS
)
"""First post of a (sender, channel): both slots zero -> nonzero (2 x 20,000, not 2 x 2,900,
EIP-2200)."""

INBOX_EXECUTION_GAS_PER_BYTE = 9
"""Bound per calldata byte: 8 (LOG) + 3/32 (copy) + 6/32 (keccak) + 3/32 (memory) + the quadratic
term (< 0.625 up to INBOX_EXECUTION_GAS_BOUND_MAX_CALLDATA)."""

INBOX_EXECUTION_GAS_BOUND_MAX_CALLDATA = 256 * 1024
"""The linear bound holds up to 256 KiB of calldata (twice the 128 KiB pool limit); beyond:
:func:`inbox_execution_gas`."""


def inbox_execution_gas(calldata_len: int, *, first_post: bool = False) -> int:
    """Exact execution gas of a successful inbox call (both slots cold, EIP-2929), without
    intrinsic gas or the EIP-7623 floor.
    """
    if calldata_len < MIN_CALLDATA_BYTES:
        raise ValueError(f"an inbox call has at least {MIN_CALLDATA_BYTES} calldata bytes")
    words = (calldata_len + WORD_BYTES - 1) // WORD_BYTES
    memory_words = _SCRATCH_WORDS + words
    sstore = _SSTORE_SET_GAS if first_post else _SSTORE_RESET_GAS
    return (
        _STRAIGHT_LINE_GAS
        + 2 * _COLD_SLOAD_GAS
        + 2 * sstore
        # keccak of the two 64-byte scratch buffers (key, accumulator) and of the calldata
        + 2 * (_KECCAK_GAS + _KECCAK_WORD_GAS * _SCRATCH_WORDS)
        + _KECCAK_GAS
        + _KECCAK_WORD_GAS * words
        + _COPY_WORD_GAS * words
        + _MEMORY_WORD_GAS * memory_words
        + memory_words * memory_words // _MEMORY_QUAD_DIVISOR
        + _LOG_GAS
        + _LOG_TOPICS * _LOG_TOPIC_GAS
        + _LOG_DATA_GAS * (INDEX_BYTES + calldata_len)
    )


# --- calldata and accumulator ---


def _address_word(address: bytes) -> bytes:
    return _ADDRESS_PAD + address


def inbox_calldata(channel: bytes, recipient: bytes | None, body: bytes) -> bytes:
    """channel || recipient word || body (``recipient`` None: broadcast); ValueError where the
    contract would revert.
    """
    if len(channel) != CHANNEL_BYTES:
        raise ValueError(f"a channel id is {CHANNEL_BYTES} bytes, got {len(channel)}")
    if recipient is None:
        word = BROADCAST_WORD
    elif len(recipient) != ADDRESS_BYTES:
        raise ValueError(f"a recipient is a {ADDRESS_BYTES}-byte address, got {len(recipient)}")
    elif recipient == bytes(ADDRESS_BYTES):
        # The zero word means "broadcast": a post *to* the zero address cannot be expressed.
        raise ValueError("the zero address is reserved for broadcast: pass None")
    else:
        word = _address_word(recipient)
    if not body:
        raise ValueError("the body must have at least one byte")
    return bytes(channel) + word + bytes(body)


def storage_key(sender: bytes, channel: bytes) -> bytes:
    """keccak256(sender as a 32-byte word || channel): the accumulator's storage key."""
    if len(sender) != ADDRESS_BYTES:
        raise ValueError(f"a sender is a {ADDRESS_BYTES}-byte address, got {len(sender)}")
    if len(channel) != CHANNEL_BYTES:
        raise ValueError(f"a channel id is {CHANNEL_BYTES} bytes, got {len(channel)}")
    return keccak256(_address_word(sender) + channel)


def accumulator_slots(sender: bytes, channel: bytes) -> tuple[int, int]:
    """Storage slots (acc, count) of a (sender, channel): key and key + 1 (mod 2**256)."""
    key = int.from_bytes(storage_key(sender, channel), "big")
    return key, (key + 1) % _SLOT_MODULUS


def next_accumulator(acc: bytes, calldata: bytes) -> bytes:
    """acc_new = keccak256(acc || keccak256(calldata)), as the contract computes it."""
    if len(acc) != WORD_BYTES:
        raise ValueError(f"an accumulator is {WORD_BYTES} bytes, got {len(acc)}")
    return keccak256(bytes(acc) + keccak256(calldata))


def accumulator_of(calldatas: Iterable[bytes], acc: bytes = ACC_ZERO) -> bytes:
    """Fold :func:`next_accumulator` over posts in order (index 1, 2, ...)."""
    for calldata in calldatas:
        acc = next_accumulator(acc, calldata)
    return acc


# --- event decoding ---


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxPost:
    """One inbox post from its log: ``index`` = count_new (1-based), ``recipient`` None = broadcast,
    ``calldata`` as hashed."""

    inbox: bytes
    channel: bytes
    sender: bytes
    recipient: bytes | None
    index: int
    calldata: bytes
    body: bytes


def _fail(reason: str, offset: int | None = None) -> DecodingError:
    return DecodingError("inbox post log", reason, offset)


def _word_address(word: bytes, what: str) -> bytes:
    if word[: WORD_BYTES - ADDRESS_BYTES] != _ADDRESS_PAD:
        raise _fail(f"{what} topic is not an address word")
    return word[WORD_BYTES - ADDRESS_BYTES :]


def encode_post_log(
    sender: bytes, calldata: bytes, index: int
) -> tuple[tuple[bytes, bytes, bytes, bytes], bytes]:
    """The contract's LOG4 (topics, data) for ``sender``'s ``index``-th post; ValueError for what
    the contract refuses or cannot produce."""
    if len(sender) != ADDRESS_BYTES:
        raise ValueError(f"a sender is a {ADDRESS_BYTES}-byte address, got {len(sender)}")
    if len(calldata) < MIN_CALLDATA_BYTES:
        raise ValueError(f"inbox calldata has at least {MIN_CALLDATA_BYTES} bytes")
    recipient_word = bytes(calldata[CHANNEL_BYTES:HEADER_BYTES])
    if recipient_word[: WORD_BYTES - ADDRESS_BYTES] != _ADDRESS_PAD:
        raise ValueError("the recipient word is not an address word (the contract reverts)")
    if not 0 < index < _SLOT_MODULUS:
        raise ValueError("a post index is in 1..2**256-1")
    topics = (EVENT_TOPIC, bytes(calldata[:CHANNEL_BYTES]), _address_word(sender), recipient_word)
    return topics, index.to_bytes(INDEX_BYTES, "big") + bytes(calldata)


def decode_post_log(
    address: bytes,
    topics: Sequence[bytes],
    data: bytes,
    *,
    inbox: bytes | None = None,
) -> InboxPost:
    """Decode one log into an :class:`InboxPost` (other addresses refused when ``inbox`` is given);
    DecodingError for anything not a well-formed inbox post, including calldata disagreeing with
    the topics."""
    if len(address) != ADDRESS_BYTES:
        raise _fail(f"log address is {len(address)} bytes, expected {ADDRESS_BYTES}")
    if inbox is not None and bytes(address) != bytes(inbox):
        raise _fail("log not emitted by the expected inbox contract")
    if len(topics) != _LOG_TOPICS:
        raise _fail(f"expected {_LOG_TOPICS} topics, got {len(topics)}")
    for i, topic in enumerate(topics):
        if len(topic) != WORD_BYTES:
            raise _fail(f"topic {i} is {len(topic)} bytes, expected {WORD_BYTES}")
    topic0, channel, sender_word, recipient_word = (bytes(t) for t in topics)
    if topic0 != EVENT_TOPIC:
        raise _fail("topic 0 is not the inbox event topic")
    sender = _word_address(sender_word, "sender")
    recipient_addr = _word_address(recipient_word, "recipient")
    data = bytes(data)
    if len(data) < INDEX_BYTES + MIN_CALLDATA_BYTES:
        raise _fail(
            f"data is {len(data)} bytes, expected at least {INDEX_BYTES + MIN_CALLDATA_BYTES}"
        )
    index = int.from_bytes(data[:INDEX_BYTES], "big")
    if index == 0:
        raise _fail("index 0 (the first post has index 1)", 0)
    calldata = data[INDEX_BYTES:]
    if calldata[:CHANNEL_BYTES] != channel:
        raise _fail("calldata channel differs from the channel topic", INDEX_BYTES)
    if calldata[CHANNEL_BYTES:HEADER_BYTES] != recipient_word:
        raise _fail(
            "calldata recipient differs from the recipient topic", INDEX_BYTES + CHANNEL_BYTES
        )
    return InboxPost(
        inbox=bytes(address),
        channel=channel,
        sender=sender,
        recipient=None if recipient_word == BROADCAST_WORD else recipient_addr,
        index=index,
        calldata=calldata,
        body=calldata[HEADER_BYTES:],
    )
