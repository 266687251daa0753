from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from lightpost.errors import ChainProcessError
from lightpost_operator.anvil import AnvilProcess, free_port, port_is_free


def _call(url: str, method: str, params: list[object]) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, body, {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())["result"]


def test_anvil_runs_bpo1_and_finality_advances(anvil: AnvilProcess) -> None:
    info = _call(anvil.url, "anvil_nodeInfo", [])
    assert isinstance(info, dict)
    assert info["hardFork"] == "Bpo1"
    _call(anvil.url, "anvil_mine", ["0x10"])
    latest = _call(anvil.url, "eth_getBlockByNumber", ["latest", False])
    final = _call(anvil.url, "eth_getBlockByNumber", ["finalized", False])
    assert isinstance(latest, dict) and isinstance(final, dict)
    assert int(final["number"], 16) > 0
    assert int(final["number"], 16) < int(latest["number"], 16)


def test_busy_port_is_one_clear_error(anvil: AnvilProcess) -> None:
    assert not port_is_free(anvil.port)
    with pytest.raises(ChainProcessError, match=f"port {anvil.port} is busy"):
        AnvilProcess(port=anvil.port).start()


def test_stop_frees_the_port() -> None:
    proc = AnvilProcess(port=free_port()).start()
    port = proc.port
    proc.stop()
    proc.stop()  # idempotent
    assert port_is_free(port)


def _files(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]


def test_anvil_history_on_disk_is_deleted_at_stop(tmp_path: Path) -> None:
    # anvil spills old states to HOME/.foundry/anvil/tmp and leaves them behind when it
    # is stopped (GBs per test run); each AnvilProcess gets its own HOME and removes it
    proc = AnvilProcess(port=free_port()).start()
    home = proc._owned_state_dir
    assert home is not None and home.is_dir()
    try:
        _call(proc.url, "anvil_mine", ["0x3e8"])
        assert any(".foundry" in p.parts for p in _files(home))
    finally:
        proc.stop()
    assert not home.exists()
    # a caller-given directory is the caller's: kept, and anvil wrote there
    given = tmp_path / "anvil-home"
    with AnvilProcess(port=free_port(), state_dir=given) as kept:
        _call(kept.url, "anvil_mine", ["0x3e8"])
    assert _files(given)
