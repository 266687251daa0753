"""Keccak-256 in pure Python: the device core's built-in keccak.

Original Keccak (rate 1088, pad 0x01), NOT SHA3-256 (0x06): ``hashlib.sha3_256`` cannot stand in.
safe-pysha3 would add 0.64 MB; this is ~100x slower (~0.24 ms per short hash, docs/benchmarks.md),
ample for a device; ``lightpost[fast]`` adds it back.
"""

import struct

# No ``from __future__`` and no struct.Struct: this file also runs unchanged on MicroPython (the
# device library copies it; tests/device/test_micropython.py runs it there).

__all__ = ["RATE", "keccak256"]

RATE = 136
"""Bytes absorbed per permutation: (1600 - 2 * 256) / 8."""

_LANES_PER_BLOCK = "<17Q"
"""One rate-sized block as 17 little-endian 64-bit lanes."""

_MASK = (1 << 64) - 1

_ROUND_CONSTANTS = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)  # fmt: skip
"""The iota step's constants, one per round of Keccak-f[1600] (24 rounds)."""

_ROTATIONS = (
    (0, 36, 3, 41, 18),
    (1, 44, 10, 45, 2),
    (62, 6, 43, 15, 61),
    (28, 55, 25, 21, 56),
    (27, 20, 39, 8, 14),
)
"""rho offsets r[x][y] for the lane at column x, row y."""

_RHO_PI = tuple(
    (x + 5 * y, y + 5 * ((2 * x + 3 * y) % 5), _ROTATIONS[x][y], 64 - _ROTATIONS[x][y])
    for y in range(5)
    for x in range(5)
)
"""(source lane, destination lane, rotation, 64 - rotation): rho and pi in one pass.
Lane (x, y) is at index x + 5y; pi moves it to (y, 2x + 3y mod 5)."""


def _permute(a: list[int]) -> None:
    # Keccak-f[1600] on 25 lanes, in place.
    m = _MASK
    b = [0] * 25
    for rc in _ROUND_CONSTANTS:
        # theta: xor every lane with the parities of two neighbouring columns
        c0 = a[0] ^ a[5] ^ a[10] ^ a[15] ^ a[20]
        c1 = a[1] ^ a[6] ^ a[11] ^ a[16] ^ a[21]
        c2 = a[2] ^ a[7] ^ a[12] ^ a[17] ^ a[22]
        c3 = a[3] ^ a[8] ^ a[13] ^ a[18] ^ a[23]
        c4 = a[4] ^ a[9] ^ a[14] ^ a[19] ^ a[24]
        d = (
            c4 ^ (((c1 << 1) | (c1 >> 63)) & m),
            c0 ^ (((c2 << 1) | (c2 >> 63)) & m),
            c1 ^ (((c3 << 1) | (c3 >> 63)) & m),
            c2 ^ (((c4 << 1) | (c4 >> 63)) & m),
            c3 ^ (((c0 << 1) | (c0 >> 63)) & m),
        )
        # rho (rotate each lane) and pi (move it)
        for src, dst, r, rr in _RHO_PI:
            t = a[src] ^ d[src % 5]
            b[dst] = ((t << r) | (t >> rr)) & m
        # chi: the only non-linear step, row by row
        for y in range(0, 25, 5):
            b0, b1, b2, b3, b4 = b[y : y + 5]
            a[y] = b0 ^ (~b1 & b2)
            a[y + 1] = b1 ^ (~b2 & b3)
            a[y + 2] = b2 ^ (~b3 & b4)
            a[y + 3] = b3 ^ (~b4 & b0)
            a[y + 4] = b4 ^ (~b0 & b1)
        # iota
        a[0] ^= rc


def keccak256(data: bytes) -> bytes:
    """Return the 32-byte Keccak-256 digest of ``data``."""
    padded = bytearray(data)
    padded.append(0x01)
    padded.extend(bytes(-len(padded) % RATE))
    padded[-1] |= 0x80
    state = [0] * 25
    for offset in range(0, len(padded), RATE):
        for i, lane in enumerate(struct.unpack_from(_LANES_PER_BLOCK, padded, offset)):
            state[i] ^= lane
        _permute(state)
    return b"".join(lane.to_bytes(8, "little") for lane in state[:4])
