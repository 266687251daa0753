"""A minimal MQTT 3.1.1 client for devices (OASIS MQTT 3.1.1; runs unchanged on MicroPython).

CONNECT with a will and clean_session=0 (the broker keeps the session and the device's
subscription across reconnects), PUBLISH at QoS 1 with one message in flight: wait for the
PUBACK, retransmit with DUP=1, SUBSCRIBE, PINGREQ, incoming QoS 1 PUBLISH acknowledged. Everything
the broker sends is bounded: packet length, topic length, packets queued while waiting.
"""

import socket

try:
    from time import ticks_diff, ticks_ms
except ImportError:  # CPython
    from time import monotonic

    def ticks_ms():
        return int(monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b


MAX_PACKET = 2048
"""Largest packet accepted from the broker (remaining length): a record is <= 1,200 bytes."""
MAX_INBOX = 8
"""Incoming PUBLISH packets queued while waiting for an acknowledgement; beyond it, error."""
RETRIES = 3
"""PUBLISH retransmissions (DUP=1) before publish() gives up; the record stays retained."""
ACK_TIMEOUT_MS = 5000
"""How long to wait for a CONNACK, PUBACK or SUBACK before retransmitting or giving up."""

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 0x10, 0x20, 0x30, 0x40, 0x82, 0x90
PINGREQ, PINGRESP, DISCONNECT = 0xC0, 0xD0, 0xE0


class MQTTError(Exception):
    """The broker refused, broke the protocol, sent too much, or did not answer in time."""


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _str(s):
    if isinstance(s, str):
        s = s.encode()
    return len(s).to_bytes(2, "big") + s


def packet(kind, body):
    """Fixed header (type and flags, remaining length) + body."""
    return bytes((kind,)) + _varint(len(body)) + body


def connect_packet(client_id, keepalive, will_topic=None, will_msg=b"", clean=False):
    flags = 0x02 if clean else 0
    payload = _str(client_id)
    if will_topic is not None:
        flags |= 0x04 | 0x08  # will flag, will QoS 1, not retained
        payload += _str(will_topic) + _str(will_msg)
    head = _str("MQTT") + bytes((4, flags)) + keepalive.to_bytes(2, "big")
    return packet(CONNECT, head + payload)


def publish_packet(topic, msg, pid, dup=False):
    """QoS 1 PUBLISH, not retained."""
    return packet(PUBLISH | 0x02 | (0x08 if dup else 0), _str(topic) + pid.to_bytes(2, "big") + msg)


def subscribe_packet(pid, topic):
    return packet(SUBSCRIBE, pid.to_bytes(2, "big") + _str(topic) + b"\x01")


def parse_publish(flags, body):
    """(topic, packet id or None, message) of an incoming PUBLISH body; bounded by its caller."""
    if len(body) < 2:
        raise MQTTError("short PUBLISH")
    n = int.from_bytes(body[:2], "big")
    qos = (flags >> 1) & 3
    end = 2 + n + (2 if qos else 0)
    if qos == 3 or end > len(body):
        raise MQTTError("malformed PUBLISH")
    topic = bytes(body[2 : 2 + n]).decode()
    pid = int.from_bytes(body[2 + n : end], "big") if qos else None
    return topic, pid, bytes(body[end:])


class Client:
    """One connection to one broker. ``sock`` may be injected (tests script the broker)."""

    def __init__(self, client_id, keepalive=60, sock=None):
        self.client_id = client_id
        self.keepalive = keepalive
        self.sock = sock
        self.inbox = []  # (topic, msg) of PUBLISH packets received, acknowledged
        self.on_message = None  # if set, called with (topic, msg) instead of the inbox
        self._pid = 0
        self._last_io = ticks_ms()

    def _next_pid(self):
        self._pid = self._pid % 0xFFFF + 1
        return self._pid

    def connect(self, host, port, will_topic=None, will_msg=b"", timeout_ms=ACK_TIMEOUT_MS):
        """Open the socket (unless injected), CONNECT; True if the broker kept a session."""
        if self.sock is None:
            addr = socket.getaddrinfo(host, port)[0][-1]
            self.sock = socket.socket()
            self.sock.settimeout(timeout_ms / 1000)
            self.sock.connect(addr)
        self._send(connect_packet(self.client_id, self.keepalive, will_topic, will_msg))
        _, body = self._expect(CONNACK, None, timeout_ms)
        if len(body) != 2 or body[1]:
            self.close()
            raise MQTTError(f"connection refused, code {body[1] if len(body) == 2 else -1}")
        return bool(body[0] & 1)

    def publish(self, topic, msg, timeout_ms=ACK_TIMEOUT_MS):
        """QoS 1: send, wait for its PUBACK, retransmit with DUP up to RETRIES times."""
        pid = self._next_pid()
        for attempt in range(RETRIES + 1):
            self._send(publish_packet(topic, msg, pid, dup=attempt > 0))
            try:
                self._expect(PUBACK, pid, timeout_ms)
                return pid
            except OSError:  # timeout: retransmit (MQTT 3.1.1, 4.4)
                pass
        raise MQTTError(f"no PUBACK after {RETRIES} retransmissions")

    def subscribe(self, topic, timeout_ms=ACK_TIMEOUT_MS):
        pid = self._next_pid()
        self._send(subscribe_packet(pid, topic))
        _, body = self._expect(SUBACK, pid, timeout_ms)
        if len(body) != 3 or body[2] > 1:
            raise MQTTError("subscription refused")

    def ping(self, timeout_ms=ACK_TIMEOUT_MS):
        self._send(packet(PINGREQ, b""))
        try:
            self._expect(PINGRESP, None, timeout_ms)
        except OSError:
            self.close()
            raise MQTTError("no PINGRESP") from None

    def poll(self, timeout_ms=0):
        """Handle what the broker sent (PUBLISH -> inbox); ping when the keepalive is half gone."""
        if ticks_diff(ticks_ms(), self._last_io) > self.keepalive * 500:
            self.ping()
        try:  # noqa: SIM105 (no contextlib on MicroPython)
            self._handle(*self._read(timeout_ms))
        except OSError:  # nothing arrived in time
            pass

    def disconnect(self):
        try:
            self._send(packet(DISCONNECT, b""))
        finally:
            self.close()

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # --- wire ---

    def _send(self, data):
        if self.sock is None:
            raise MQTTError("not connected")
        self.sock.sendall(data) if hasattr(self.sock, "sendall") else self.sock.write(data)
        self._last_io = ticks_ms()

    def _recv(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                self.close()
                raise MQTTError("connection closed by the broker")
            buf += chunk
        return buf

    def _read(self, timeout_ms):
        """One packet: (first byte, body); OSError when nothing starts within timeout_ms."""
        if self.sock is None:
            raise MQTTError("not connected")
        self.sock.settimeout(timeout_ms / 1000)
        first = self._recv(1)[0]
        self.sock.settimeout(ACK_TIMEOUT_MS / 1000)  # the rest of a started packet
        try:
            length = shift = 0
            while True:
                b = self._recv(1)[0]
                length |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
                if shift > 21:
                    raise MQTTError("malformed remaining length")
            if length > MAX_PACKET:
                raise MQTTError(f"packet of {length} bytes from the broker is over the bound")
            return first, self._recv(length)
        except OSError:  # the stream is out of step: drop the connection
            self.close()
            raise MQTTError("broken packet from the broker") from None
        except MQTTError:
            self.close()
            raise

    def _handle(self, first, body):
        kind = first & 0xF0
        if kind == PUBLISH:
            topic, pid, msg = parse_publish(first & 0x0F, body)
            if pid is not None:
                self._send(packet(PUBACK, pid.to_bytes(2, "big")))
            if self.on_message is not None:
                self.on_message(topic, msg)
                return
            if len(self.inbox) >= MAX_INBOX:
                raise MQTTError(f"more than {MAX_INBOX} messages from the broker unread")
            self.inbox.append((topic, msg))
        elif kind not in (PUBACK, PINGRESP, SUBACK):  # a late acknowledgement is harmless
            raise MQTTError(f"unexpected packet type 0x{kind:02x}")

    def _expect(self, kind, pid, timeout_ms):
        """Read until the acknowledgement ``kind`` (for ``pid``) arrives; handle the rest."""
        start = ticks_ms()
        while True:
            left = timeout_ms - ticks_diff(ticks_ms(), start)
            if left <= 0:
                raise OSError(110, "timed out")  # ETIMEDOUT, as the socket raises it
            first, body = self._read(left)
            got = first & 0xF0
            if got == kind and (pid is None or body[:2] == pid.to_bytes(2, "big")):
                return got, body
            if got == CONNACK or (got == kind and kind != PUBACK):
                raise MQTTError(f"unexpected packet type 0x{got:02x}")
            self._handle(first, body)
