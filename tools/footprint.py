"""Measure the installed size of the device core: `pip install lightpost` into a fresh
virtual environment, then add up what each distribution installed (pip, setuptools,
wheel and their helpers excluded: they are not lightpost's dependencies).

Two figures: the files the wheels install (`pip install --no-compile`; this is what the
4 MB budget is checked against) and the same after `compileall`, i.e. with the
__pycache__ bytecode Python writes on first import when the directory is writable. The
bytecode is a cache (deletable, regenerated on demand; absent on a read-only root fs),
so it is reported, not budgeted -- see docs/benchmarks.md.

Usage: python tools/footprint.py [--budget-mb 4] [--json]
Exit status 1 when the size exceeds the budget.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_MB = 4.0
"""Issue #2: the device core installs in <= 4 MB (web3.py: 78 MB, the paper: 5 MB)."""
EXCLUDED = (
    "pip",
    "setuptools",
    "wheel",
    "pkg_resources",
    "_distutils_hack",
    "distutils-precedence",
)
"""Installer tooling that every venv has; not a dependency of lightpost."""
MB = 1_000_000


def _by_distribution(purelib: Path) -> dict[str, int]:
    """Attribute every installed file to its distribution via dist-info/RECORD."""
    sizes: dict[str, int] = {}
    owner: dict[Path, str] = {}
    for record in purelib.glob("*.dist-info/RECORD"):
        dist = record.parent.name.split("-")[0]
        if dist.lower().startswith(EXCLUDED):
            continue
        for line in record.read_text().splitlines():
            path = (purelib / line.split(",")[0]).resolve()
            if path.is_file() and path not in owner:
                owner[path] = dist
                sizes[dist] = sizes.get(dist, 0) + path.stat().st_size
    # bytecode written after install belongs to the distribution of its source file
    for pyc in purelib.rglob("__pycache__/*.pyc"):
        source = (pyc.parent.parent / (pyc.name.split(".")[0] + ".py")).resolve()
        if pyc.resolve() not in owner and source in owner:
            dist = owner[source]
            sizes[dist] = sizes.get(dist, 0) + pyc.stat().st_size
    return sizes


def measure() -> tuple[dict[str, int], dict[str, int]]:
    """(sizes as installed by `pip install --no-compile`, sizes after compiling bytecode)."""
    with tempfile.TemporaryDirectory(prefix="lightpost-footprint-") as tmp:
        env_dir = Path(tmp) / "venv"
        venv.EnvBuilder(with_pip=True).create(env_dir)
        py = env_dir / "bin" / "python"
        subprocess.run(
            [
                str(py),
                "-m",
                "pip",
                "install",
                "-q",
                "--no-compile",
                "--disable-pip-version-check",
                str(ROOT),
            ],
            check=True,
        )
        purelib = Path(
            subprocess.run(
                [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
        files = _by_distribution(purelib)
        subprocess.run([str(py), "-m", "compileall", "-q", str(purelib)], check=False)
        compiled = _by_distribution(purelib)

        def order(d: dict[str, int]) -> dict[str, int]:
            return dict(sorted(d.items(), key=lambda kv: -kv[1]))

        return order(files), order(compiled)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-mb", type=float, default=BUDGET_MB)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes, compiled = measure()
    total = sum(sizes.values())
    with_bytecode = sum(compiled.values())
    ok = total <= args.budget_mb * MB
    if args.json:
        report = {
            "total_bytes": total,
            "budget_bytes": int(args.budget_mb * MB),
            "within_budget": ok,
            "packages": sizes,
            "with_bytecode_bytes": with_bytecode,
            "with_bytecode_packages": compiled,
        }
        print(json.dumps(report))
    else:
        print("installed files (pip install --no-compile):")
        for name, size in sizes.items():
            print(
                f"  {name:<22} {size / MB:6.2f} MB   (with bytecode {compiled[name] / MB:.2f} MB)"
            )
        print(
            f"device core installed: {total / MB:.2f} MB (budget {args.budget_mb:.1f} MB) "
            + ("OK" if ok else "OVER BUDGET")
            + f"; with compiled bytecode caches: {with_bytecode / MB:.2f} MB"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
