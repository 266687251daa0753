"""Measure the installed size of the device core: `pip install lightpost` into a fresh
virtual environment, then add up site-packages (pip, setuptools, wheel and their
helpers excluded, as they are not lightpost's dependencies).

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
EXCLUDED = ("pip", "setuptools", "wheel", "pkg_resources", "_distutils_hack", "distutils-precedence")
"""Installer tooling that every venv has; not a dependency of lightpost."""
MB = 1_000_000


def _by_distribution(purelib: Path) -> dict[str, int]:
    """Attribute every installed file to its distribution via dist-info/RECORD."""
    sizes: dict[str, int] = {}
    seen: set[Path] = set()
    for record in purelib.glob("*.dist-info/RECORD"):
        dist = record.parent.name.split("-")[0]
        if dist.lower().startswith(EXCLUDED):
            continue
        for line in record.read_text().splitlines():
            rel = line.split(",")[0]
            path = (purelib / rel).resolve()
            if path.is_file() and path not in seen:
                seen.add(path)
                sizes[dist] = sizes.get(dist, 0) + path.stat().st_size
    # files pip did not list (e.g. .pyc compiled later) still count, as "unlisted"
    for path in purelib.rglob("*"):
        top = path.relative_to(purelib).parts[0]
        if path.is_file() and path.resolve() not in seen and not top.startswith(EXCLUDED):
            sizes["(unlisted)"] = sizes.get("(unlisted)", 0) + path.stat().st_size
    return sizes


def measure() -> dict[str, int]:
    with tempfile.TemporaryDirectory(prefix="lightpost-footprint-") as tmp:
        env_dir = Path(tmp) / "venv"
        venv.EnvBuilder(with_pip=True).create(env_dir)
        py = env_dir / "bin" / "python"
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)],
            check=True,
        )
        purelib = subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        sizes = _by_distribution(Path(purelib))
        return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-mb", type=float, default=BUDGET_MB)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = measure()
    total = sum(sizes.values())
    ok = total <= args.budget_mb * MB
    if args.json:
        print(json.dumps({"total_bytes": total, "budget_bytes": int(args.budget_mb * MB),
                          "within_budget": ok, "packages": sizes}))
    else:
        for name, size in sizes.items():
            print(f"  {name:<22} {size / MB:6.2f} MB")
        print(f"device core installed: {total / MB:.2f} MB (budget {args.budget_mb:.1f} MB) "
              + ("OK" if ok else "OVER BUDGET"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
