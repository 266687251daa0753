"""lightpost.device on CPython without a socket: the pure signer against RFC 6979 vectors,
coincurve and eth-account; the flash store across simulated power losses; receipts; the MQTT
client against a scripted broker."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from lightpost.core import rlp as core_rlp
from lightpost.device import Device, MQTTError, StoreFull, rlp, rlp_strings
from lightpost.device import mqtt as m
from lightpost.device.ec import N, Signer, rfc6979_nonce
from lightpost.device.store import Store
from lightpost_gateway.record import (
    DeviceReceipt,
    Domain,
    Kind,
    decode_record,
    encode_device_receipt,
    open_record,
    parse_birth,
)

SECRET = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
DOMAIN = Domain(chain_id=31337, anchor=bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))

# RFC 6979 nonces for secp256k1 with SHA-256 (published with python-ecdsa, btclib and bitcoinjs;
# message = sha256 of the text)
RFC6979 = [
    (1, b"Satoshi Nakamoto", 0x8F8A276C19F4149656B280621E358CCE24F5F52542772691EE69063B74F15D15),
    (
        1,
        b"All those moments will be lost in time, like tears in rain. Time to die...",
        0x38AA22D72376B4DBC472E06C3BA403EE0A394DA63FC58D88686C611ABA98D6B3,
    ),
    (
        N - 1,
        b"Satoshi Nakamoto",
        0x33A19B60E25FB6F4435AF53A3D42D493644827367E6453928554F43E49AA6F90,
    ),
]


@pytest.mark.parametrize(("secret", "text", "k"), RFC6979)
def test_rfc6979_nonces(secret: int, text: bytes, k: int) -> None:
    assert rfc6979_nonce(secret, hashlib.sha256(text).digest()) == k


@settings(max_examples=40, deadline=None)
@given(st.integers(1, N - 1), st.binary(min_size=32, max_size=32))
def test_pure_signer_equals_coincurve_and_eth_account(secret: int, digest: bytes) -> None:
    raw = secret.to_bytes(32, "big")
    pure = Signer(raw, pure=True)
    sig = pure.sign(digest)
    assert sig == Signer(raw).sign(digest)  # libsecp256k1: RFC 6979, low s
    assert sig == bytes(Account.unsafe_sign_hash(digest, raw).signature)[:64] + bytes(
        [Account.unsafe_sign_hash(digest, raw).v - 27]
    )
    assert Account._recover_hash(digest, signature=sig) == Account.from_key(raw).address
    assert "0x" + pure.address.hex() == Account.from_key(raw).address.lower()
    assert int.from_bytes(sig[32:64], "big") <= N // 2


def test_signer_refuses_out_of_range_keys() -> None:
    for bad in (bytes(32), N.to_bytes(32, "big"), b"\x01" * 31):
        with pytest.raises(ValueError):
            Signer(bad, pure=True)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=60), st.integers(0, 1 << 70)), max_size=12))
def test_device_rlp_equals_core(items: list[bytes | int]) -> None:
    assert rlp(items) == core_rlp.encode(items)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_rlp_strings_accepts_only_canonical_lists(data: bytes) -> None:
    got = rlp_strings(data, 4)
    if got is not None:
        assert core_rlp.decode(data) == got and core_rlp.encode(got) == data


def _device(tmp_path: Path, **kw: object) -> Device:
    return Device(SECRET, DOMAIN.chain_id, DOMAIN.anchor, str(tmp_path / "flash"), **kw)


def test_records_chain_and_verify(tmp_path: Path) -> None:
    dev = _device(tmp_path)
    hashes = []
    for i in range(3):
        seq, digest, wire = dev.record(Kind.DATA, b"t", b"%d" % i)
        signed, address, got = open_record(wire, DOMAIN)
        assert (seq, got, address) == (i, digest, dev.address)
        assert signed.record.prev == (hashes[-1] if hashes else bytes(32))
        hashes.append(digest)


def test_power_loss_between_queue_and_state_resumes_without_reusing_a_seq(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = _device(tmp_path)
    dev.record(Kind.DATA, b"t", b"a")

    def lose_power(self: Store, seq: int, head: bytes) -> None:
        raise KeyboardInterrupt  # the queue file is on flash, the state is not

    monkeypatch.setattr(Store, "save", lose_power)
    with pytest.raises(KeyboardInterrupt):
        dev.record(Kind.DATA, b"t", b"b")
    monkeypatch.undo()
    # half-written files of a later crash are dropped, never read
    (tmp_path / "flash" / "state.new").write_bytes(b"torn")
    (tmp_path / "flash" / "q" / f"{9:016x}.new").write_bytes(b"torn")
    rebooted = _device(tmp_path)
    b = decode_record(rebooted.store.get(1)[1])  # type: ignore[index]
    assert rebooted.seq == 2 and rebooted.head == rebooted.store.get(1)[0]  # type: ignore[index]
    assert b.record.payload == b"b"
    seq, _, wire = rebooted.record(Kind.DATA, b"t", b"c")
    assert seq == 2 and decode_record(wire).record.prev == rebooted.store.get(1)[0]  # type: ignore[index]
    assert sorted(os.listdir(tmp_path / "flash")) == ["q", "state"]


def test_device_bounds_equal_the_core_and_refuse_before_signing(tmp_path: Path) -> None:
    """A record past the core's bounds would be refused by every gateway and leave a hole in the
    chain: the device refuses it and consumes no seq."""
    import lightpost.device as device
    import lightpost_gateway.record as core

    assert (device.MAX_STREAM, device.MAX_PAYLOAD) == (core.MAX_STREAM, core.MAX_PAYLOAD)
    assert (device.MAX_CONTENT_TYPE, device.MAX_CADENCE_S) == (
        core.MAX_CONTENT_TYPE,
        core.MAX_CADENCE_S,
    )
    assert (device.SIGNING_PREFIX, device.TOPIC_ROOT) == (core.SIGNING_PREFIX, core.TOPIC_ROOT)
    dev = _device(tmp_path)
    for stream, payload, ctype in (
        (b"t", b"p" * (core.MAX_PAYLOAD + 1), 0),
        (b"s" * (core.MAX_STREAM + 1), b"", 0),
        (b"", b"no stream", 0),
        (b"t", b"", core.MAX_CONTENT_TYPE + 1),
    ):
        with pytest.raises(ValueError):
            dev.publish(stream, payload, ctype)
    assert dev.seq == 0 and dev.store.retained() == []
    with pytest.raises(ValueError):
        _device(tmp_path, cadence_s=0)


def test_corrupt_state_is_refused_not_guessed(tmp_path: Path) -> None:
    dev = _device(tmp_path)
    dev.record(Kind.DATA, b"t", b"a")
    state = tmp_path / "flash" / "state"
    state.write_bytes(state.read_bytes()[:-1] + b"\x00")
    with pytest.raises(OSError, match="corrupt"):
        _device(tmp_path)


def test_retained_queue_is_bounded_and_keeps_room_for_a_birth(tmp_path: Path) -> None:
    dev = _device(tmp_path)
    dev.store.max_retained = 4
    for i in range(3):
        dev.record(Kind.DATA, b"t", b"%d" % i)
    with pytest.raises(StoreFull):
        dev.record(Kind.DATA, b"t", b"x")
    assert dev.seq == 3  # nothing was signed
    dev.record(Kind.BIRTH, payload=rlp([60, 0]))  # a connect still can
    assert dev.store.retained() == [0, 1, 2, 3]


def test_receipt_releases_only_its_own_records(tmp_path: Path) -> None:
    dev = _device(tmp_path)
    digests = [dev.record(Kind.DATA, b"t", b"%d" % i)[1] for i in range(4)]

    def receipt(seq: int, digest: bytes) -> bytes:
        r = DeviceReceipt(seq=seq, record_hash=digest, tx_hash=b"\x01" * 32, block=5)
        return encode_device_receipt(r)

    assert not dev.on_receipt(receipt(2, digests[1]))  # a hash that is not its record at 2
    assert not dev.on_receipt(receipt(2, digests[2]) + b"\x00")  # trailing byte
    leading_zero = core_rlp.encode([b"\x00\x02", digests[2], b"\x01" * 32, 5])
    assert not dev.on_receipt(leading_zero)
    assert not dev.on_receipt(receipt(9, digests[2]))  # nothing retained at 9
    assert dev.store.retained() == [0, 1, 2, 3]
    assert dev.on_receipt(receipt(2, digests[2]))
    # only the record named: records below it may be held by no gateway (the broker can drop
    # a record it acknowledged), so a receipt for 2 never releases 0 and 1
    assert dev.store.retained() == [0, 1, 3]
    assert dev.on_receipt(receipt(0, digests[0]))
    assert dev.store.retained() == [1, 3]


# --- MQTT against a scripted broker ---------------------------------------------------------


class ScriptedSocket:
    """Hands out scripted broker bytes; a timeout when the script is empty."""

    def __init__(self, *chunks: bytes) -> None:
        self.incoming = bytearray(b"".join(chunks))
        self.sent: list[bytes] = []
        self.closed = False

    def feed(self, data: bytes) -> None:
        self.incoming += data

    def settimeout(self, t: float) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.sent.append(bytes(data))

    def recv(self, n: int) -> bytes:
        if not self.incoming:
            raise TimeoutError
        out = bytes(self.incoming[:n])
        del self.incoming[:n]
        return out

    def close(self) -> None:
        self.closed = True


CONNACK_OK = b"\x20\x02\x00\x00"


def _body(pkt: bytes) -> bytes:
    """A packet without its fixed header."""
    i = 1
    while pkt[i] & 0x80:
        i += 1
    return pkt[i + 1 :]


def _client(sock: ScriptedSocket) -> m.Client:
    c = m.Client("dev", 60, sock)
    return c


def test_connect_sends_will_and_persistent_session() -> None:
    sock = ScriptedSocket(CONNACK_OK)
    _client(sock).connect("unused", 0, "lp/1/d/ab", b"will")
    sent = sock.sent[0]
    assert sent[0] == 0x10 and sent[2:9] == b"\x00\x04MQTT\x04"  # MQTT 3.1.1
    flags = sent[9]
    assert flags & 0x02 == 0  # clean_session = 0
    assert flags & 0x04 and (flags >> 3) & 3 == 1 and not flags & 0x20  # will, QoS 1, not retained
    assert sent.endswith(b"\x00\x09lp/1/d/ab\x00\x04will")


def test_connack_refusal_is_an_error() -> None:
    sock = ScriptedSocket(b"\x20\x02\x00\x05")
    with pytest.raises(MQTTError, match="refused"):
        _client(sock).connect("unused", 0)
    assert sock.closed


def test_publish_retransmits_with_dup_until_puback(monkeypatch: pytest.MonkeyPatch) -> None:
    sock = ScriptedSocket()
    c = _client(sock)
    script: Iterator[bytes] = iter([b"", b"\x40\x02\x00\x01"])  # 1st: silence, 2nd: PUBACK

    real_send = c._send

    def send(data: bytes) -> None:
        real_send(data)
        sock.feed(next(script))

    monkeypatch.setattr(c, "_send", send)
    assert c.publish("t", b"rec", timeout_ms=50) == 1
    first, second = sock.sent
    assert first[0] == 0x32 and second[0] == 0x3A  # QoS 1; then QoS 1 + DUP
    assert first[1:] == second[1:]  # same packet id, same message


def test_publish_gives_up_after_the_retransmission_bound() -> None:
    sock = ScriptedSocket()
    with pytest.raises(MQTTError, match="no PUBACK"):
        _client(sock).publish("t", b"rec", timeout_ms=10)
    assert len(sock.sent) == m.RETRIES + 1


def test_incoming_publish_is_acked_and_queued_while_waiting() -> None:
    incoming = m.publish_packet("lp/1/r/ab", b"receipt", 7)
    sock = ScriptedSocket(incoming, b"\x40\x02\x00\x01")
    c = _client(sock)
    c.publish("t", b"rec", timeout_ms=50)
    assert c.inbox == [("lp/1/r/ab", b"receipt")]
    assert b"\x40\x02\x00\x07" in sock.sent  # PUBACK for the broker's packet 7


@pytest.mark.parametrize(
    ("broker_bytes", "match"),
    [
        (b"\x30\xff\xff\x7f", "over the bound"),  # 2 MB PUBLISH announced
        (b"\x30\xff\xff\xff\xff\x01", "malformed remaining length"),
        (b"\x30\x10\x00", "broken packet"),  # announced 16 bytes, sent 1, then silence
        (b"\x50\x02\x00\x01", "unexpected packet"),  # PUBREC: we never publish at QoS 2
    ],
)
def test_broker_bytes_are_bounded(broker_bytes: bytes, match: str) -> None:
    sock = ScriptedSocket(broker_bytes)
    with pytest.raises(MQTTError, match=match):
        _client(sock).poll(10)


def test_inbox_is_bounded() -> None:
    sock = ScriptedSocket(*[m.publish_packet("x", b"m", i + 1) for i in range(m.MAX_INBOX + 1)])
    c = _client(sock)
    for _ in range(m.MAX_INBOX):
        c.poll(10)
    with pytest.raises(MQTTError, match="unread"):
        c.poll(10)


def test_connect_publishes_birth_then_backlog_with_death_as_will(tmp_path: Path) -> None:
    dev = _device(tmp_path)
    dev.record(Kind.DATA, b"t", b"unanchored")
    sock = ScriptedSocket(
        CONNACK_OK, b"\x90\x03\x00\x01\x01", b"\x40\x02\x00\x02", b"\x40\x02\x00\x03"
    )
    dev.connect("unused", 0, sock=sock)
    connect, subscribe, pub0, pub1 = sock.sent
    will = connect[connect.index(dev.topic.encode()) + len(dev.topic) + 2 :]
    death, addr, _ = open_record(will, DOMAIN)
    birth, baddr, bhash = open_record(m.parse_publish(2, _body(pub1))[2], DOMAIN)
    assert addr == baddr == dev.address
    assert birth.record.kind == Kind.BIRTH and birth.record.seq == 1
    assert parse_birth(birth.record).unanchored_from == 0
    assert death.record.kind == Kind.DEATH and death.record.prev == bhash
    assert m.parse_publish(2, _body(pub0))[2] == dev.store.get(0)[1]  # type: ignore[index]
    assert dev.receipt_topic.encode() in subscribe


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.binary(max_size=55), min_size=4, max_size=4).filter(
        lambda x: len(core_rlp.encode(x)) < 256
    )
)
def test_rlp_strings_decodes_what_core_encodes(items: list[bytes]) -> None:
    assert rlp_strings(core_rlp.encode(items), 4) == items
