"""AES-128 and CTR mode in pure Python (FIPS-197, NIST SP 800-38A), for the keystore's
``aes-128-ctr`` (:mod:`lightpost.core.keystore`).

Forward cipher only (CTR uses it both ways); T-tables *computed* at import (FIPS-197 5.1.1), none to
mistype. Not constant-time: acceptable, its only use is a local keystore once per start, never a
network-facing oracle.
"""

from __future__ import annotations

__all__ = [
    "BLOCK_SIZE",
    "KEY_SIZE",
    "ctr",
    "encrypt_block",
    "expand_key",
]

BLOCK_SIZE = 16
"""AES block size in bytes (FIPS-197 section 3.1: Nb = 4 words of 32 bits)."""

KEY_SIZE = 16
"""AES-128 key size in bytes (FIPS-197 section 5: Nk = 4)."""

_ROUNDS = 10
"""Number of rounds for AES-128 (FIPS-197 section 5, figure 4: Nr = 10)."""

_REDUCTION_POLY = 0x11B
"""The irreducible polynomial x^8 + x^4 + x^3 + x + 1 defining GF(2^8) (FIPS-197 4.2)."""

_AFFINE_CONSTANT = 0x63
"""The constant {63} of the S-box affine transformation (FIPS-197 equation 5.1)."""

_GENERATOR = 0x03
"""{03} = x + 1 generates the multiplicative group of GF(2^8); used to find inverses."""

_WORD_MASK = 0xFFFFFFFF
"""Mask of a 32-bit word."""

_COUNTER_MODULUS = 1 << (8 * BLOCK_SIZE)
"""CTR counter: one 128-bit big-endian integer mod 2^128 (SP 800-38A B.1, m = b = 128; geth,
eth-keyfile)."""


def _xtime(a: int) -> int:
    # Multiply by x (i.e. {02}) in GF(2^8) (FIPS-197 section 4.2.1).
    a <<= 1
    return a ^ _REDUCTION_POLY if a & 0x100 else a


def _gf_mul(a: int, b: int) -> int:
    # Multiply two elements of GF(2^8) (FIPS-197 section 4.2).
    result = 0
    while b:
        if b & 1:
            result ^= a
        a = _xtime(a)
        b >>= 1
    return result


def _rotl8(x: int, shift: int) -> int:
    return ((x << shift) | (x >> (8 - shift))) & 0xFF


def _build_sbox() -> tuple[int, ...]:
    # S-box = affine(inverse(b)), with inverse(0) = 0 (FIPS-197 section 5.1.1).
    # Inverses via powers of the generator {03}: a = g^i  =>  a^-1 = g^(255 - i).
    power = [0] * 255
    log = [0] * 256
    value = 1
    for i in range(255):
        power[i] = value
        log[value] = i
        value = _gf_mul(value, _GENERATOR)
    sbox = []
    for a in range(256):
        b = power[(255 - log[a]) % 255] if a else 0
        sbox.append(
            b ^ _rotl8(b, 1) ^ _rotl8(b, 2) ^ _rotl8(b, 3) ^ _rotl8(b, 4) ^ _AFFINE_CONSTANT
        )
    return tuple(sbox)


_SBOX = _build_sbox()
"""The AES S-box (FIPS-197 figure 7), computed from its definition."""


def _ror32(x: int, shift: int) -> int:
    return ((x >> shift) | (x << (32 - shift))) & _WORD_MASK


def _build_t_tables() -> tuple[tuple[int, ...], ...]:
    # T0..T3: a round's SubBytes+ShiftRows+MixColumns per byte position (FIPS-197 eq. 5.6); T1..T3
    # are byte rotations of T0.
    t0 = []
    for a in range(256):
        s = _SBOX[a]
        t0.append((_gf_mul(s, 2) << 24) | (s << 16) | (s << 8) | _gf_mul(s, 3))
    return (
        tuple(t0),
        tuple(_ror32(w, 8) for w in t0),
        tuple(_ror32(w, 16) for w in t0),
        tuple(_ror32(w, 24) for w in t0),
    )


_T0, _T1, _T2, _T3 = _build_t_tables()


def _round_constants() -> tuple[int, ...]:
    # Rcon[i] = x^(i-1) in GF(2^8), placed in the top byte (FIPS-197 section 5.2).
    rcon = []
    value = 1
    for _ in range(_ROUNDS):
        rcon.append(value << 24)
        value = _xtime(value)
    return tuple(rcon)


_RCON = _round_constants()


def _sub_word(w: int) -> int:
    return (
        (_SBOX[w >> 24] << 24)
        | (_SBOX[(w >> 16) & 0xFF] << 16)
        | (_SBOX[(w >> 8) & 0xFF] << 8)
        | _SBOX[w & 0xFF]
    )


def expand_key(key: bytes) -> tuple[int, ...]:
    """AES-128 key expansion (FIPS-197 section 5.2): 44 round-key words."""
    if len(key) != KEY_SIZE:
        raise ValueError(f"AES-128 takes a {KEY_SIZE}-byte key")
    words = [int.from_bytes(key[i : i + 4], "big") for i in range(0, KEY_SIZE, 4)]
    nk = KEY_SIZE // 4
    for i in range(nk, 4 * (_ROUNDS + 1)):
        temp = words[i - 1]
        if i % nk == 0:
            # RotWord then SubWord, then Rcon
            temp = _sub_word(((temp << 8) | (temp >> 24)) & _WORD_MASK) ^ _RCON[i // nk - 1]
        words.append(words[i - nk] ^ temp)
    return tuple(words)


def _encrypt_words(rk: tuple[int, ...], block: bytes) -> bytes:
    # Encrypt one 16-byte block with expanded round keys ``rk`` (FIPS-197 figure 5).
    s0 = int.from_bytes(block[0:4], "big") ^ rk[0]
    s1 = int.from_bytes(block[4:8], "big") ^ rk[1]
    s2 = int.from_bytes(block[8:12], "big") ^ rk[2]
    s3 = int.from_bytes(block[12:16], "big") ^ rk[3]
    t0, t1, t2, t3 = _T0, _T1, _T2, _T3
    for r in range(1, _ROUNDS):
        k = 4 * r
        # ShiftRows is the column offset in each term: row i comes from column c + i.
        s0, s1, s2, s3 = (
            t0[s0 >> 24] ^ t1[(s1 >> 16) & 0xFF] ^ t2[(s2 >> 8) & 0xFF] ^ t3[s3 & 0xFF] ^ rk[k],
            t0[s1 >> 24] ^ t1[(s2 >> 16) & 0xFF] ^ t2[(s3 >> 8) & 0xFF] ^ t3[s0 & 0xFF] ^ rk[k + 1],
            t0[s2 >> 24] ^ t1[(s3 >> 16) & 0xFF] ^ t2[(s0 >> 8) & 0xFF] ^ t3[s1 & 0xFF] ^ rk[k + 2],
            t0[s3 >> 24] ^ t1[(s0 >> 16) & 0xFF] ^ t2[(s1 >> 8) & 0xFF] ^ t3[s2 & 0xFF] ^ rk[k + 3],
        )
    # Final round: no MixColumns (FIPS-197 figure 5, last three steps).
    sb = _SBOX
    k = 4 * _ROUNDS
    out = b""
    for c0, c1, c2, c3, kw in (
        (s0, s1, s2, s3, rk[k]),
        (s1, s2, s3, s0, rk[k + 1]),
        (s2, s3, s0, s1, rk[k + 2]),
        (s3, s0, s1, s2, rk[k + 3]),
    ):
        word = (
            (sb[c0 >> 24] << 24)
            | (sb[(c1 >> 16) & 0xFF] << 16)
            | (sb[(c2 >> 8) & 0xFF] << 8)
            | sb[c3 & 0xFF]
        ) ^ kw
        out += word.to_bytes(4, "big")
    return out


def encrypt_block(key: bytes, block: bytes) -> bytes:
    """Encrypt one 16-byte block under a 16-byte key (the AES-128 forward cipher)."""
    if len(block) != BLOCK_SIZE:
        raise ValueError(f"AES encrypts {BLOCK_SIZE}-byte blocks")
    return _encrypt_words(expand_key(key), block)


def ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-128-CTR, its own inverse (SP 800-38A 6.5); ``iv`` is the first counter block, incremented
    as a 128-bit big-endian integer."""
    if len(iv) != BLOCK_SIZE:
        raise ValueError(f"the CTR initial counter block is {BLOCK_SIZE} bytes")
    rk = expand_key(key)
    counter = int.from_bytes(iv, "big")
    out = bytearray()
    for start in range(0, len(data), BLOCK_SIZE):
        keystream = _encrypt_words(rk, counter.to_bytes(BLOCK_SIZE, "big"))
        chunk = data[start : start + BLOCK_SIZE]
        out += bytes(a ^ b for a, b in zip(chunk, keystream, strict=False))
        counter = (counter + 1) % _COUNTER_MODULUS
    return bytes(out)
