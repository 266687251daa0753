"""lightpost.device: a device with a key and an MQTT connection, nothing else (issue 14).

Runs unchanged on CPython and MicroPython (no typing, dataclasses or ``__future__`` here). It
signs records (lightpost_gateway.record's format, built here independently: the core does not run
on MicroPython; tests check the bytes are equal), keeps its seq and head on flash, retains
records until a gateway's receipt names them, and talks MQTT 3.1.1 itself::

    dev = Device(secret, chain_id=1, anchor=ANCHOR, state_dir="/flash/lp", cadence_s=60)
    dev.connect("192.0.2.7", 1883)
    dev.publish(b"temp", b'{"c": 21.5}', content_type=2)
    dev.poll()  # receipts release retained records; keepalive pings
"""

from .ec import Signer, keccak256
from .mqtt import Client, MQTTError
from .store import Store, StoreFull

__all__ = ["Device", "MQTTError", "StoreFull"]

SIGNING_PREFIX = b"\xb0lp"
"""lightpost_gateway.record.SIGNING_PREFIX (why 0xb0: see there)."""
VERSION = 1
DATA, BIRTH, DEATH = 0, 1, 2
TOPIC_ROOT = "lp/1"
MAX_STREAM, MAX_PAYLOAD, MAX_CONTENT_TYPE, MAX_CADENCE_S = 32, 1024, 0xFFFF, 1 << 32
"""lightpost_gateway.record's bounds: a record past them would be refused by every gateway and
leave a hole in the chain, so the device refuses to sign it."""
MAX_RECEIPT = 128
"""Longest receipt accepted: rlp([seq, hash, tx hash, block]) is at most 87 bytes."""


def _int(n):
    out = b""
    while n:
        out = bytes((n & 0xFF,)) + out
        n >>= 8
    return out


def _len(n, offset):
    if n < 56:
        return bytes((offset + n,))
    b = _int(n)
    return bytes((offset + 55 + len(b),)) + b


def rlp(items):
    """RLP of a flat list of ints and byte strings (all a record needs)."""
    out = b""
    for x in items:
        x = _int(x) if isinstance(x, int) else x
        out += x if len(x) == 1 and x[0] < 0x80 else _len(len(x), 0x80) + x
    return _len(len(out), 0xC0) + out


def rlp_strings(data, count):
    """Strict decoder of a list (< 256 bytes) of ``count`` strings (< 56 bytes each); None if
    it is anything else (non-canonical, truncated, trailing bytes)."""
    if len(data) < 2 or data[0] < 0xC0 or data[0] > 0xF8:
        return None
    i = 1 if data[0] < 0xF8 else 2
    size = data[0] - 0xC0 if i == 1 else data[1]
    if size != len(data) - i or (i == 2 and size < 56):
        return None
    out = []
    while i < len(data):
        b = data[i]
        if b < 0x80:
            out.append(data[i : i + 1])
            i += 1
            continue
        n = b - 0x80
        if n >= 56 or i + 1 + n > len(data) or (n == 1 and data[i + 1] < 0x80):
            return None
        out.append(data[i + 1 : i + 1 + n])
        i += 1 + n
    return out if len(out) == count else None


class Device:
    """One device: key, domain (chain id, anchor contract), flash directory, MQTT."""

    def __init__(self, secret, chain_id, anchor, state_dir, cadence_s=60, pure=False):
        if not 0 < cadence_s < MAX_CADENCE_S:
            raise ValueError("cadence_s out of range")
        self.signer = Signer(secret, pure)
        self.address = self.signer.address
        self.chain_id = chain_id
        self.anchor = anchor
        self.cadence_s = cadence_s
        self.store = Store(state_dir)
        self.seq, self.head = self.store.boot()
        hexaddr = self.address.hex()
        self.topic = TOPIC_ROOT + "/d/" + hexaddr
        self.receipt_topic = TOPIC_ROOT + "/r/" + hexaddr
        self.mqtt = None
        self.birth = None  # hash of the last record if it is a birth

    def sign(self, kind, stream, seq, prev, time_ms, content_type, payload):
        """(record hash, wire bytes) of one record."""
        domain = [VERSION, self.chain_id, self.anchor]
        fields = [kind, stream, seq, prev, time_ms, content_type, payload]
        digest = keccak256(SIGNING_PREFIX + rlp(domain + fields))  # no [*x] on MicroPython
        sig = self.signer.sign(digest)
        wire = rlp([VERSION, kind, stream, seq, prev, time_ms, content_type, payload, sig])
        return digest, wire

    def record(self, kind, stream=b"", payload=b"", content_type=0, time_ms=0):
        """Sign the next record of the chain and commit it to flash (queue, then seq and head).
        Returns (seq, hash, wire)."""
        if (
            len(stream) > MAX_STREAM
            or len(payload) > MAX_PAYLOAD
            or not 0 <= content_type <= MAX_CONTENT_TYPE
            or not 0 <= time_ms < 1 << 64
            or (kind == DATA) != bool(stream)
        ):
            raise ValueError("record out of bounds: stream 1-32 bytes, payload <= 1024 bytes")
        seq = self.seq
        digest, wire = self.sign(kind, stream, seq, self.head, time_ms, content_type, payload)
        # a data record leaves room for the birth that the next connect needs
        self.store.put(seq, digest, wire, room=1 if kind == BIRTH else 2)
        self.store.save(seq + 1, digest)
        self.seq, self.head = seq + 1, digest
        self.birth = digest if kind == BIRTH else None
        return seq, digest, wire

    def connect(self, host, port, keepalive=60, client_id=None, sock=None):
        """Sign a birth and its death notice, CONNECT with the death as will (clean_session=0),
        subscribe to receipts, then publish every retained record (the birth among them). A
        birth still retained and last is reused: failed connects in a row must not fill the
        flash with births (then no birth fits, and no connect can fetch the receipts)."""
        if self.birth is None or self.store.get(self.seq - 1) is None:
            retained = self.store.retained()
            first = retained[0] if retained else self.seq
            self.record(BIRTH, payload=rlp([self.cadence_s, first]))
        _, death = self.sign(DEATH, b"", self.seq - 1, self.birth, 0, 0, b"")
        self.mqtt = Client(client_id or self.address.hex(), keepalive, sock)
        self.mqtt.on_message = self._message  # receipts taken as they come, never queued
        self.mqtt.connect(host, port, self.topic, death)
        self.mqtt.subscribe(self.receipt_topic)
        self.republish()

    def republish(self):
        """Publish every retained record again; call it when receipts are overdue (a broker
        can drop a record it acknowledged: no gateway subscribed, a crash before its save)."""
        for seq in self.store.retained():
            got = self.store.get(seq)
            if got is not None:
                self.mqtt.publish(self.topic, got[1])

    def publish(self, stream, payload, content_type=0, time_ms=0):
        """Sign, retain and publish one reading; returns its seq. Raises StoreFull when
        MAX_RETAINED records await a receipt, ValueError past a bound (nothing is signed then).
        Not connected, or the broker gone (MQTTError): the record stays retained and is
        published on the next connect."""
        seq, _, wire = self.record(DATA, stream, payload, content_type, time_ms)
        if self.mqtt is not None:
            self.mqtt.publish(self.topic, wire)
        return seq

    def poll(self, timeout_ms=0):
        """Process what the broker sent: receipts release retained records."""
        self.mqtt.poll(timeout_ms)

    def _message(self, topic, msg):
        if topic == self.receipt_topic:
            self.on_receipt(msg)

    def on_receipt(self, msg):
        """rlp([seq, record hash, tx hash, block]): release the record at seq if the hash is
        its own record's, and only that one (the gateway vouches for what it holds, not for
        records below it: those may be lost in a broker). True if released."""
        fields = rlp_strings(msg, 4) if len(msg) <= MAX_RECEIPT else None
        if fields is None or len(fields[0]) > 8 or fields[0][:1] == b"\x00":
            return False
        seq = int.from_bytes(fields[0], "big")
        got = self.store.get(seq)
        if got is None or got[0] != fields[1]:
            return False
        self.store.release(seq)
        return True

    def close(self):
        if self.mqtt is not None:
            self.mqtt.disconnect()
            self.mqtt = None
        self.birth = None  # hash of the last record if it is a birth
