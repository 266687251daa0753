"""`trust` and the [beacon] table (issue 15): one clear ConfigError line per mistake, never a beacon
URL in it, and the light client imported only when the config asks for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lightpost.errors import ConfigError
from tests.node.test_config import SECRET, base, parse

ROOT = "0x" + "ab" * 32


def beacon(**over: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "endpoints": [f"https://beacon.invalid/{SECRET}"],
        "trusted_root": ROOT,
    }
    table.update(over)
    return table


def test_trust_defaults_to_quorum_with_no_light_client() -> None:
    cfg = parse(base())
    assert cfg.trust == "quorum" and cfg.beacon is None


def test_an_unknown_trust_is_one_line() -> None:
    with pytest.raises(ConfigError, match="`trust` must be `quorum`, `beacon` or `both`"):
        parse(base(trust="rpc"))


def test_beacon_trust_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    """lightpost_beacon blocked from import: the line names the extra (a device core without it)."""
    code = (
        "import sys; sys.modules['lightpost_beacon'] = None\n"
        "from pathlib import Path\n"
        "from lightpost.node.config import parse_config\n"
        "from lightpost.errors import ConfigError\n"
        "raw = dict(chain_id=1, endpoints=['http://127.0.0.1:1'], keystore='k', data_dir='d',\n"
        "  inbox='0x5FbDB2315678afecb367f032d93F642f64180aa3', trust='beacon',\n"
        f"  beacon={{'endpoints': ['http://127.0.0.1:2'], 'trusted_root': '{ROOT}'}})\n"
        "try:\n"
        "    parse_config(raw, path=Path('x.toml'))\n"
        "except ConfigError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "config: trust = 'beacon' needs the light client: pip install 'lightpost[beacon]'"
    )


def test_the_device_core_does_not_import_the_light_client() -> None:
    code = (
        "import sys, lightpost.node.receiver, lightpost.node.config\n"
        "print(any(m.startswith('lightpost_beacon') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


pytest.importorskip("lightpost_beacon")


def test_the_beacon_table_is_read_into_settings() -> None:
    cfg = parse(base(trust="beacon", beacon=beacon(max_age="2d", network="mainnet")))
    settings = cfg.beacon
    assert cfg.trust == "beacon"
    assert settings.trusted_root == bytes.fromhex("ab" * 32)
    assert settings.max_age_slots == 2 * 86400 // 12
    assert settings.labels == ("beacon#0",)
    assert settings.state_file == Path("/tmp/dev/data/beacon-state.bin")
    assert SECRET not in repr(cfg) and SECRET not in repr(settings)


def test_max_age_in_slots_and_the_devnet_network() -> None:
    cfg = parse(
        base(trust="both", beacon=beacon(max_age=500, network="devnet", genesis_time=1_700_000_000))
    )
    assert cfg.beacon.max_age_slots == 500
    assert cfg.beacon.config.genesis_time == 1_700_000_000
    assert cfg.beacon.config.committee_size == 32


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (None, r"needs a \[beacon\] table"),
        (beacon(trusted_root="0x12"), "beacon.trusted_root must be a 0x block root"),
        (beacon(trusted_root="ab" * 32), "beacon.trusted_root must be a 0x block root"),
        (beacon(max_age="14 days"), "beacon.max_age must be slots"),
        (beacon(max_age=0), "beacon.max_age must be slots"),
        (beacon(network="sepolia"), "beacon.network must be `mainnet` or `devnet`"),
        (beacon(network="devnet"), "needs beacon.genesis_time"),
        (beacon(endpoints=[]), "beacon.endpoints must be a non-empty list"),
        (beacon(endpoints=["ftp://x"]), r"beacon.endpoints\[0\] is not an http\(s\) URL"),
        (beacon(extra=1), "unknown key `beacon.extra`"),
    ],
)
def test_each_beacon_mistake_is_one_line(table: Any, message: str) -> None:
    raw = base(trust="beacon")
    if table is not None:
        raw["beacon"] = table
    with pytest.raises(ConfigError, match=message) as err:
        parse(raw)
    assert SECRET not in str(err.value) and "\n" not in str(err.value)
