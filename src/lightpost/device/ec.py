"""secp256k1 signing for devices: pure Python that runs unchanged on MicroPython.

ECDSA with RFC 6979 deterministic nonces (HMAC-SHA256) and low s (EIP-2), so a signature equals
libsecp256k1's byte for byte; on CPython, coincurve (a dependency of lightpost) signs instead.
MicroPython has no ``int.bit_length`` and its ``pow(a, -1, m)`` returns 0: inverses here are
Fermat's ``pow(a, m - 2, m)``. Pure Python is not constant time: keep the key on a device that
an attacker cannot time closely, or use a secure element.
"""

from hashlib import sha256

try:  # CPython: the compiled keccak when installed, else lightpost's pure one
    from lightpost.core.hashing import keccak256
except ImportError:  # MicroPython: lightpost/core/keccak.py is copied beside this file
    from .keccak import keccak256

try:
    import coincurve
except ImportError:
    coincurve = None

P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
"""The field prime (SEC 2, 2.4.1)."""
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""The group order."""
G = (
    0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
    0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
)
"""The generator, affine."""


def _double(x, y, z):
    """Jacobian doubling on y^2 = x^3 + 7 (a = 0)."""
    if not y:
        return 0, 1, 0
    yy = y * y % P
    s = 4 * x * yy % P
    m = 3 * x * x % P
    x3 = (m * m - 2 * s) % P
    return x3, (m * (s - x3) - 8 * yy * yy) % P, 2 * y * z % P


def _add_affine(x1, y1, z1, x2, y2):
    """Jacobian (x1, y1, z1) + affine (x2, y2)."""
    if not z1:
        return x2, y2, 1
    zz = z1 * z1 % P
    u2 = x2 * zz % P
    s2 = y2 * zz * z1 % P
    h = (u2 - x1) % P
    r = (s2 - y1) % P
    if not h:
        return _double(x1, y1, z1) if not r else (0, 1, 0)
    hh = h * h % P
    hhh = h * hh % P
    v = x1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    return x3, (r * (v - x3) - y1 * hhh) % P, z1 * h % P


def point_mul(k):
    """k * G in affine coordinates, MSB first over all 256 bits (no bit_length)."""
    x, y, z = 0, 1, 0
    gx, gy = G
    for i in range(255, -1, -1):
        x, y, z = _double(x, y, z)
        if (k >> i) & 1:
            x, y, z = _add_affine(x, y, z, gx, gy)
    zi = pow(z, P - 2, P)
    zi2 = zi * zi % P
    return x * zi2 % P, y * zi2 * zi % P


def _hmac(key, data):
    """HMAC-SHA256 (RFC 2104) for a 32-byte key (MicroPython has no hmac module)."""
    block = key + bytes(32)
    inner = sha256(bytes(b ^ 0x36 for b in block) + data).digest()
    return sha256(bytes(b ^ 0x5C for b in block) + inner).digest()


def rfc6979_nonce(secret, digest):
    """RFC 6979, section 3.2, for secp256k1 with HMAC-SHA256 (qlen = hlen = 256): the first k."""
    x = secret.to_bytes(32, "big")
    h = (int.from_bytes(digest, "big") % N).to_bytes(32, "big")
    v = b"\x01" * 32
    k = bytes(32)
    k = _hmac(k, v + b"\x00" + x + h)
    v = _hmac(k, v)
    k = _hmac(k, v + b"\x01" + x + h)
    v = _hmac(k, v)
    while True:
        v = _hmac(k, v)
        t = int.from_bytes(v, "big")
        if 0 < t < N:
            return t
        k = _hmac(k, v + b"\x00")
        v = _hmac(k, v)


def sign_pure(secret, digest):
    """(r, s, y_parity) of a 32-byte digest: RFC 6979 nonce, low s."""
    z = int.from_bytes(digest, "big")
    k = rfc6979_nonce(secret, digest)
    rx, ry = point_mul(k)
    r = rx % N
    s = pow(k, N - 2, N) * (z + r * secret) % N
    # r or s of 0, or R.x >= N (recovery id 2 or 3), has probability ~2^-128: refuse, never loop
    if not r or not s or rx >= N:
        raise ValueError("degenerate signature")
    parity = ry & 1
    if s > N // 2:
        s = N - s
        parity ^= 1
    return r, s, parity


class Signer:
    """A device key: ``sign(digest)`` -> 65 bytes r || s || y_parity; ``address``: 20 bytes.
    ``pure=True`` forces the pure-Python path (tests compare it with coincurve)."""

    def __init__(self, secret, pure=False):
        d = int.from_bytes(secret, "big")
        if len(secret) != 32 or not 0 < d < N:
            raise ValueError("a private key is 32 bytes in [1, n-1]")
        self._d = d
        self._cc = None if pure or coincurve is None else coincurve.PrivateKey(secret)
        if self._cc is not None:
            pub = self._cc.public_key.format(compressed=False)[1:]
        else:
            px, py = point_mul(d)
            pub = px.to_bytes(32, "big") + py.to_bytes(32, "big")
        self.address = keccak256(pub)[12:]

    def sign(self, digest):
        if self._cc is not None:
            return self._cc.sign_recoverable(digest, hasher=None)
        r, s, parity = sign_pure(self._d, digest)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes((parity,))
