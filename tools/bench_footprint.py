"""Footprint half of `make bench`: installed size, import time and the running node's RSS.

Installed size: lightpost (from a clean copy of this tree), ``lightpost[fast]``, web3.py
8.0.0 and eth-account 0.14.0, each pip-installed into its own fresh venv and counted by
tools/footprint.py (``fresh_venv`` + ``sizes_by_distribution``: pip/setuptools excluded,
bytecode included as pip writes it by default).

Import time: a fresh ``python -I`` of each venv imports the modules under test; the import
itself is timed inside the process (perf_counter around the import statement) and the
whole process from outside; medians over IMPORT_REPEATS runs, the targets interleaved
round by round so that load from others on the machine hits them alike.

Node RSS: a one-device devnet (lightpost-operator's ``devnet_up``, anvil on loopback,
1 s blocks); ``lightpost node --config DEVICE.toml`` of the lightpost venv and then of the
lightpost[fast] venv runs while the benchmark enqueues NODE_WAVES x NODE_WAVE_MESSAGES
100-byte readings; once all are mined, VmRSS (and the peak, VmHWM) is read from
/proc/PID/status.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench_common import progress, reading
from footprint import ROOT, SOURCE_IGNORE, fresh_venv, sizes_by_distribution

from lightpost.core.envelope import ContentType
from lightpost.core.outbox import State
from lightpost.node.config import load_config
from lightpost.node.runtime import open_store
from lightpost.node.sender import enqueue_message
from lightpost_operator.anvil import free_port, stop_process
from lightpost_operator.devnet import devnet_down, devnet_up

DEVICE_NODE_MODULES = ("lightpost.cli.main", "lightpost.cli.node_cmds")
"""What `lightpost node` imports: the CLI and the node command (runtime, sender,
receiver, services, the core they use)."""

PACKAGE_SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "lightpost": ("", DEVICE_NODE_MODULES),
    "lightpost[fast]": ("[fast]", DEVICE_NODE_MODULES),
    "web3 8.0.0": ("web3==8.0.0", ("web3",)),
    "eth-account 0.14.0": ("eth-account==0.14.0", ("eth_account",)),
}
"""Name -> (requirement: extras of this tree, or a pinned distribution; modules timed)."""

IMPORT_REPEATS = 11
"""Fresh interpreters per import-time figure (the median is reported)."""

NODE_WAVES = 3
NODE_WAVE_MESSAGES = 10
"""Readings the node sends before its RSS is read: NODE_WAVES waves of this many."""

NODE_TIMEOUT_S = 90.0
"""Longest a wave may take to be mined before the run fails."""

NODE_CHANNEL = "devnet"
"""The channel every devnet device may post on."""

_PROBE = (
    "import time; t = time.perf_counter(); {imports}; dt = time.perf_counter() - t; "
    "rss = [l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0].split()[1]; "
    "print(dt, rss)"
)
"""Runs in the measured interpreter: prints the import's seconds and VmRSS in kB."""


@contextlib.contextmanager
def _stderr_to(log: Path) -> Iterator[None]:
    """Send this process's (and its children's) stderr to ``log``: pip's warnings would
    drown the progress lines. On failure the log's tail is shown."""
    saved = os.dup(2)
    try:
        with open(log, "ab") as fh:
            sys.stderr.flush()
            os.dup2(fh.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    except BaseException:
        print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        os.close(saved)


def install_package_sets(tmp: Path) -> dict[str, dict[str, Any]]:
    """Each package set in a fresh venv under ``tmp``: its python and bytes per dist."""
    source = tmp / "lightpost-src"
    shutil.copytree(ROOT, source, ignore=SOURCE_IGNORE)
    out: dict[str, dict[str, Any]] = {}
    for name, (requirement, modules) in PACKAGE_SETS.items():
        progress(f"footprint: pip install {name} into a fresh venv")
        spec = requirement if "==" in requirement else f"{source}{requirement}"
        directory = tmp / f"venv-{len(out)}"
        with _stderr_to(tmp / "pip.log"):
            purelib = fresh_venv(directory, spec)
        out[name] = {
            "python": str(directory / "bin" / "python"),
            "bin": str(directory / "bin"),
            "modules": modules,
            "sizes": sizes_by_distribution(purelib),
        }
    return out


def _probe(python: str, modules: tuple[str, ...]) -> tuple[float, float, int]:
    """(seconds of the import, seconds of the whole process, VmRSS kB after it)."""
    imports = "; ".join(f"import {m}" for m in modules) or "pass"
    start = time.perf_counter()
    proc = subprocess.run(
        [python, "-I", "-c", _PROBE.format(imports=imports)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    wall = time.perf_counter() - start
    seconds, rss = proc.stdout.split()
    return float(seconds), wall, int(rss)


def measure_imports(sets: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median import time, process time and RSS after import, per package set (plus a
    bare interpreter, which is the same base Python as every venv)."""
    targets = {name: (s["python"], tuple(s["modules"])) for name, s in sets.items()}
    targets["bare interpreter"] = (next(iter(sets.values()))["python"], ())
    samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name in targets}
    progress(f"import time: {IMPORT_REPEATS} fresh interpreters per package set")
    for _ in range(IMPORT_REPEATS):
        for name, (python, modules) in targets.items():
            samples[name].append(_probe(python, modules))
    return {
        name: {
            "import_s": statistics.median(s[0] for s in runs),
            "process_s": statistics.median(s[1] for s in runs),
            "rss_mb": statistics.median(s[2] for s in runs) * 1024 / 1_000_000,
        }
        for name, runs in samples.items()
    }


def _proc_status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _mined(config_path: Path) -> int:
    config = load_config(config_path)
    with open_store(config) as store:
        counts = store.counts_by_state()
    return counts[State.INCLUDED] + counts[State.FINAL]


def _run_node(bin_dir: str, config_path: Path, log: Path, first_seq: int) -> dict[str, Any]:
    """Start `lightpost node`, have it send NODE_WAVES waves, read its memory, stop it."""
    config = load_config(config_path)
    base = _mined(config_path)
    with open(log, "ab") as fh:
        node = subprocess.Popen(
            [str(Path(bin_dir) / "lightpost"), "node", "--config", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        sent = 0
        for _ in range(NODE_WAVES):
            with open_store(config) as store:
                for _ in range(NODE_WAVE_MESSAGES):
                    enqueue_message(
                        store,
                        payload=reading(first_seq + sent),
                        channel=NODE_CHANNEL,
                        recipient=None,
                        content_type=ContentType.JSON,
                        now=time.time(),
                    )
                    sent += 1
            deadline = time.monotonic() + NODE_TIMEOUT_S
            while _mined(config_path) - base < sent:
                if node.poll() is not None:
                    raise SystemExit(f"lightpost node exited with {node.returncode}; see {log}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"node RSS: messages not mined in {NODE_TIMEOUT_S:.0f} s")
                time.sleep(0.2)
        rss_kb = _proc_status_kb(node.pid, "VmRSS")
        hwm_kb = _proc_status_kb(node.pid, "VmHWM")
    finally:
        stop_process(node, grace_s=15)
    return {"messages": sent, "rss_mb": rss_kb * 1024 / 1e6, "peak_mb": hwm_kb * 1024 / 1e6}


def measure_node_rss(sets: dict[str, dict[str, Any]], tmp: Path) -> dict[str, dict[str, Any]]:
    """RSS of `lightpost node` from the lightpost and lightpost[fast] venvs."""
    directory = tmp / "devnet"
    progress("node RSS: devnet up (anvil on loopback, 1 device)")
    desc = devnet_up(directory, port=free_port(), block_time=1.0, devices=1)
    try:
        config_path = Path(desc["devices"][0]["config"])
        out: dict[str, dict[str, Any]] = {}
        for name in ("lightpost", "lightpost[fast]"):
            progress(f"node RSS: `lightpost node` from the {name} venv sends readings")
            first = NODE_WAVES * NODE_WAVE_MESSAGES * len(out)
            out[name] = _run_node(sets[name]["bin"], config_path, tmp / "node.log", first)
        return out
    finally:
        devnet_down(directory)


def measure_footprint() -> dict[str, Any]:
    """Everything this module measures, in one temporary directory."""
    with tempfile.TemporaryDirectory(prefix="lightpost-bench-") as name:
        tmp = Path(name)
        sets = install_package_sets(tmp)
        imports = measure_imports(sets)
        rss = measure_node_rss(sets, tmp)
    return {
        "installed": {name: s["sizes"] for name, s in sets.items()},
        "imports": imports,
        "node_rss": rss,
        "import_repeats": IMPORT_REPEATS,
    }
