"""lightpost-gateway installed from wheels, as a user installs it (not from this source tree):
it imports the MQTT client it ships (gateway/src/lightpost_gateway/mqtt.py, a symlink to the one
source, src/lightpost/device/mqtt.py), while the device core's wheel still leaves lightpost.device
out; the device bundle (tools/device_bundle.py) still builds from that one source."""

from __future__ import annotations

import shutil
import subprocess
import venv
from pathlib import Path

import footprint

from tests.device.conftest import ROOT, device_bundle

PROBE = """
import importlib.util, lightpost_gateway.follow, lightpost_gateway.mqtt, lightpost_gateway.service
import lightpost_gateway.publish, lightpost_gateway.receive_cmd
assert importlib.util.find_spec("lightpost.device") is None, "the device core grew"
print(lightpost_gateway.mqtt.__file__)
"""


def test_gateway_from_wheels_ships_its_mqtt_client(tmp_path: Path) -> None:
    link = ROOT / "gateway" / "src" / "lightpost_gateway" / "mqtt.py"
    assert link.is_symlink() and link.resolve() == ROOT / "src" / "lightpost" / "device" / "mqtt.py"
    source = tmp_path / "lightpost"
    shutil.copytree(ROOT, source, ignore=footprint.SOURCE_IGNORE, symlinks=True)
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    py = str(env / "bin" / "python")
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(source),
         str(source / "gateway")],
        check=True,
        timeout=600,
    )  # fmt: skip
    out = subprocess.run(
        [py, "-c", PROBE], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout
    installed = Path(out.strip())
    assert not installed.is_symlink() and "site-packages" in str(installed)
    assert installed.read_bytes() == link.read_bytes()
    bundle = device_bundle.build(tmp_path / "bundle", compiled=False)
    assert (bundle / "mqtt.py").read_bytes() == link.read_bytes()
