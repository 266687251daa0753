"""Measure the installed size of the device core: `pip install lightpost` into a fresh
virtual environment, exactly as a user would (pip compiles the bytecode by default), then
add up what each distribution installed -- its files and its __pycache__ -- via each
dist-info/RECORD. pip, setuptools, wheel and their helpers are excluded: every venv has
them and they are not lightpost's dependencies.

The budget (issue #2: <= 4 MB) applies to the device core, `pip install lightpost`
(coincurve + lightpost; keccak is built in). `lightpost[fast]` (adds the compiled
safe-pysha3) is measured and reported next to it, not budgeted.

Usage: python tools/footprint.py [--budget-mb 4] [--json]
Exit status 1 when the device core exceeds the budget.
"""

from __future__ import annotations

import argparse
import json
import shutil
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


def sizes_by_distribution(purelib: Path) -> dict[str, int]:
    """Bytes per distribution: the files its RECORD lists plus the bytecode of its .py
    files (pip writes __pycache__ after the RECORD, so some .pyc are not listed)."""
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
    for pyc in purelib.rglob("__pycache__/*.pyc"):
        source = (pyc.parent.parent / (pyc.name.split(".")[0] + ".py")).resolve()
        if pyc.resolve() not in owner and source in owner:
            dist = owner[source]
            sizes[dist] = sizes.get(dist, 0) + pyc.stat().st_size
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


def fresh_venv(directory: Path, requirement: str) -> Path:
    """A new venv at ``directory`` with ``requirement`` pip-installed; returns its purelib."""
    venv.EnvBuilder(with_pip=True).create(directory)
    py = directory / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", requirement],
        check=True,
    )
    return Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )


SOURCE_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", ".tools", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "tests"
)
"""Not part of what pip builds -- and a stale build/ directory would leak removed modules
into the wheel, so the source is copied without it."""


def measure(extras: str = "") -> dict[str, int]:
    """Installed bytes per distribution for ``pip install lightpost<extras>`` (built from a
    clean copy of this source tree) in a fresh venv."""
    with tempfile.TemporaryDirectory(prefix="lightpost-footprint-") as tmp:
        source = Path(tmp) / "lightpost"
        shutil.copytree(ROOT, source, ignore=SOURCE_IGNORE)
        return sizes_by_distribution(fresh_venv(Path(tmp) / "venv", f"{source}{extras}"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-mb", type=float, default=BUDGET_MB)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    core = measure()
    fast = measure("[fast]")
    total, fast_total = sum(core.values()), sum(fast.values())
    ok = total <= args.budget_mb * MB
    if args.json:
        report = {
            "total_bytes": total,
            "budget_bytes": int(args.budget_mb * MB),
            "within_budget": ok,
            "packages": core,
            "fast_total_bytes": fast_total,
            "fast_packages": fast,
        }
        print(json.dumps(report))
    else:
        print("pip install lightpost (the device core), bytecode included:")
        for name, size in core.items():
            print(f"  {name:<22} {size / MB:6.2f} MB")
        print(
            f"device core installed: {total / MB:.2f} MB (budget {args.budget_mb:.1f} MB) "
            + ("OK" if ok else "OVER BUDGET")
        )
        extra = ", ".join(f"{n} {s / MB:.2f} MB" for n, s in fast.items() if n not in core)
        print(f"pip install 'lightpost[fast]': {fast_total / MB:.2f} MB (adds {extra})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
