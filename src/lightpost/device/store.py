"""The device's flash: its seq and head hash, and the records retained until anchored.

Layout under one directory: ``state`` = next seq (8 bytes) || head hash (32) || check (4);
``q/<seq as 16 hex digits>`` = record hash (32) || wire record, one file per retained record.
Every file is written new and then renamed over (rename is atomic on POSIX, LittleFS and FAT's
MicroPython driver), so a power loss leaves the old or the new file, never half of one.

Commit order for a new record: first its queue file (the record exists), then ``state``. A loss
between the two is repaired on boot: a queue file at or past the state's seq is adopted as the
head. So a seq is never signed twice for two different records.
"""

import os
from hashlib import sha256

MAX_RETAINED = 64
"""Records kept awaiting an anchoring receipt; at the bound, new records are refused (flash is
finite; the application decides what to drop)."""


class StoreFull(Exception):
    """MAX_RETAINED records await an anchoring receipt."""


def _write(path, data):
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if hasattr(os, "fsync"):  # CPython; MicroPython's flush reaches the block device
            os.fsync(f.fileno())
    os.rename(tmp, path)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _check(body):
    return sha256(body).digest()[:4]


class Store:
    def __init__(self, root, max_retained=MAX_RETAINED):
        self.root = root
        self.qdir = root + "/q"
        self.max_retained = max_retained
        for d in (root, self.qdir):
            try:  # noqa: SIM105 (no contextlib on MicroPython)
                os.mkdir(d)
            except OSError:  # exists
                pass

    def boot(self):
        """(next seq, head hash) after any power loss; drops half-written files."""
        for d in (self.root, self.qdir):
            for name in os.listdir(d):
                if name.endswith(".new"):
                    os.remove(d + "/" + name)
        raw = _read(self.root + "/state")
        seq, head = 0, bytes(32)
        if raw is not None:
            if len(raw) != 44 or _check(raw[:40]) != raw[40:]:
                raise OSError("device state is corrupt; refusing to guess a seq")
            seq, head = int.from_bytes(raw[:8], "big"), raw[8:40]
        for s in self.retained():  # a record committed to the queue but not to state
            if s >= seq:
                seq, head = s + 1, self.get(s)[0]
        self.save(seq, head)
        return seq, head

    def save(self, seq, head):
        body = seq.to_bytes(8, "big") + head
        _write(self.root + "/state", body + _check(body))

    def _path(self, seq):
        return f"{self.qdir}/{seq:016x}"

    def retained(self):
        """Seqs of the retained records, ascending."""
        return sorted(int(n, 16) for n in os.listdir(self.qdir) if len(n) == 16)

    def put(self, seq, digest, wire, room=1):
        """Retain a record (hash, wire bytes); ``room``: records that must still fit after it."""
        if len(self.retained()) + room > self.max_retained:
            raise StoreFull(f"{self.max_retained} records await an anchoring receipt")
        _write(self._path(seq), digest + wire)

    def get(self, seq):
        """(hash, wire) of a retained record, or None."""
        raw = _read(self._path(seq))
        return None if raw is None else (raw[:32], raw[32:])

    def release(self, seq):
        """Forget the retained record at seq (a receipt named it: it is anchored)."""
        os.remove(self._path(seq))
