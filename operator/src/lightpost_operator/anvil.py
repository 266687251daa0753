"""Find, start and stop Foundry's anvil (the real local Ethereum chain).

Lookup order for the binary: ``$LIGHTPOST_ANVIL``, then ``anvil`` on ``PATH``, then
the project-local install made by ``make anvil`` (npm package
``@foundry-rs/anvil@1.7.1`` under ``.tools/anvil``). Only loopback addresses are used.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from lightpost.errors import ChainProcessError

__all__ = [
    "ANVIL_NPM_PACKAGE",
    "DEFAULT_SLOTS_IN_EPOCH",
    "AnvilProcess",
    "find_anvil",
    "free_port",
    "port_is_free",
]

ANVIL_NPM_PACKAGE = "@foundry-rs/anvil@1.7.1"
"""The pinned npm package that ships the Linux anvil binary."""

LOOPBACK = "127.0.0.1"
"""anvil only ever listens on loopback."""

DEFAULT_SLOTS_IN_EPOCH = 2
"""anvil reports finalized = latest - 2 epochs; 2 slots/epoch makes finality 4 blocks deep."""

_LOCAL_BIN = Path(".tools/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
"""Where ``make anvil`` puts the binary, relative to the project root."""

START_TIMEOUT_S = 20.0
"""How long to wait for a freshly started anvil to answer eth_chainId."""

INSTALL_HINT = (
    f"anvil not found: run `make anvil` in the lightpost checkout (installs {ANVIL_NPM_PACKAGE} "
    "into .tools/anvil), or set LIGHTPOST_ANVIL to the anvil binary"
)


def _candidate_roots() -> list[Path]:
    here = Path(__file__).resolve()
    # operator/src/lightpost_operator/anvil.py -> the project root is 3 levels up
    return [Path.cwd(), here.parents[3]]


def find_node_script(env_var: str, local: Path, hint: str) -> str:
    """The path of a Node.js chain's CLI script: ``$env_var``, else ``local`` (relative to the
    project root, as a ``make`` target installs it), else ChainProcessError with ``hint``."""
    env = os.environ.get(env_var)
    if env:
        if os.path.isfile(env):
            return env
        raise ChainProcessError(f"{env_var} does not point at a file: {env}")
    for root in _candidate_roots():
        if (root / local).is_file():
            return str(root / local)
    raise ChainProcessError(hint)


def find_anvil() -> str:
    """Return the path of the anvil binary or raise ChainProcessError with install steps."""
    env = os.environ.get("LIGHTPOST_ANVIL")
    if env:
        if os.access(env, os.X_OK):
            return env
        raise ChainProcessError(f"LIGHTPOST_ANVIL does not point at an executable: {env}")
    on_path = shutil.which("anvil")
    if on_path:
        return on_path
    for root in _candidate_roots():
        candidate = root / _LOCAL_BIN
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise ChainProcessError(INSTALL_HINT)


def port_is_free(port: int) -> bool:
    """True when nothing listens on loopback ``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def stop_process(proc: subprocess.Popen[bytes], *, grace_s: float, kill_wait_s: float = 5) -> None:
    """SIGTERM ``proc`` if it still runs, wait ``grace_s``, then SIGKILL it and reap it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=kill_wait_s)


def remove_state_dir(path: Path) -> None:
    """Delete an anvil state directory (after its anvil has exited)."""
    shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    """A loopback TCP port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _rpc(url: str, method: str, params: list[object], timeout: float) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, body, {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())["result"]


@dataclass
class AnvilProcess:
    """A running anvil on loopback. Use :meth:`start`; always :meth:`stop` it."""

    name: ClassVar[str] = "anvil"
    """The node's name in messages (subclasses start other nodes the same way)."""
    port: int
    block_time: float | None = None
    slots_in_epoch: int = DEFAULT_SLOTS_IN_EPOCH
    log_path: Path | None = None
    extra_args: tuple[str, ...] = ()
    binary: str = field(default_factory=find_anvil)
    state_dir: Path | None = None
    """anvil's home: it writes historical states under ``HOME/.foundry/anvil/tmp`` (about
    2 GB per 6,000 blocks, measured) and does not delete them when stopped. None: a fresh
    temporary directory, deleted by :meth:`stop`. A given directory is the caller's to
    delete (:func:`remove_state_dir`)."""
    home: Path | None = field(default=None, init=False)
    """The HOME it runs with (``state_dir`` or the temporary one), once started."""
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _owned_state_dir: Path | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self) -> list[str]:
        cmd = [
            self.binary,
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--slots-in-an-epoch",
            str(self.slots_in_epoch),
            "--accounts",
            "10",
            "--balance",
            "1000000",
        ]
        if self.block_time:
            cmd += ["--block-time", str(self.block_time)]
        return cmd + list(self.extra_args)

    def start(self, *, detach: bool = False) -> AnvilProcess:
        """Start anvil and wait until it answers. ``detach`` puts it in its own session."""
        if not port_is_free(self.port):
            raise ChainProcessError(
                f"port {self.port} is busy: stop what uses it or choose another with --port"
            )
        home = self.state_dir
        if home is None:
            home = self._owned_state_dir = Path(tempfile.mkdtemp(prefix=f"lightpost-{self.name}-"))
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=detach,
                env={**os.environ, "HOME": str(home)},
            )
        except OSError as exc:
            self._remove_owned_state_dir()
            raise ChainProcessError(f"cannot start {self.name}: {exc.strerror}") from None
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            status = self._proc.poll()
            if status is not None:
                self._proc = None
                self._remove_owned_state_dir()
                raise ChainProcessError(
                    f"{self.name} exited at start with status {status}"
                    + (f" (see {self.log_path})" if self.log_path else "")
                )
            try:
                _rpc(self.url, "eth_chainId", [], timeout=1.0)
                return self
            except (OSError, urllib.error.URLError, ValueError, KeyError):
                time.sleep(0.05)
        self.stop()
        raise ChainProcessError(f"{self.name} did not answer within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        """Terminate anvil (SIGTERM, then SIGKILL after 5 s) and delete the state
        directory it was given by default. Safe to call twice."""
        proc, self._proc = self._proc, None
        try:
            if proc is not None:
                stop_process(proc, grace_s=5)
        finally:
            self._remove_owned_state_dir()

    def _remove_owned_state_dir(self) -> None:
        owned, self._owned_state_dir = self._owned_state_dir, None
        if owned is not None:
            remove_state_dir(owned)

    def __enter__(self) -> AnvilProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
