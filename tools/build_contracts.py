"""Regenerate src/lightpost/contracts/inbox.json from the assembly source (`make contracts`).

    .venv/bin/python tools/build_contracts.py           # write the artifact
    .venv/bin/python tools/build_contracts.py --check   # exit 1 if it is out of date

The artifact holds the runtime, the initcode (deploy wrapper + runtime), the event topic
and signature, and the SHA-256 of the source, so tests can prove source and bytecode
have not drifted apart.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evmasm import assemble, constants, deploy_wrapper

from lightpost.core.hashing import keccak256

__all__ = ["ARTIFACT", "SOURCE", "build_inbox", "main", "render"]

CONTRACTS_DIR = Path(__file__).resolve().parents[1] / "src" / "lightpost" / "contracts"
SOURCE = CONTRACTS_DIR / "inbox.easm"
"""The inbox's assembly source."""

ARTIFACT = CONTRACTS_DIR / "inbox.json"
"""The generated artifact read at run time by lightpost.adapters.contracts."""

EVENT_SIGNATURE = "LightpostPostV1(bytes32,address,address,uint256,bytes)"
"""Must match the source's ``.const EVENT_TOPIC keccak(...)`` (checked below)."""


def build_inbox(source: str) -> dict[str, str]:
    """The artifact dict for an inbox source text."""
    runtime = assemble(source)
    topic = constants(source)["EVENT_TOPIC"].to_bytes(32, "big")
    if topic != keccak256(EVENT_SIGNATURE.encode()):
        raise SystemExit("EVENT_TOPIC in the source does not match EVENT_SIGNATURE")
    return {
        "runtime": "0x" + runtime.hex(),
        "initcode": "0x" + deploy_wrapper(runtime).hex(),
        "event_signature": EVENT_SIGNATURE,
        "event_topic": "0x" + topic.hex(),
        "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
    }


def render(artifact: dict[str, str]) -> str:
    """The exact text written to the artifact file (stable key order, final newline)."""
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, verify) the inbox artifact."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the artifact is stale")
    args = parser.parse_args(argv)
    text = render(build_inbox(SOURCE.read_text(encoding="utf-8")))
    if args.check:
        current = ARTIFACT.read_text(encoding="utf-8") if ARTIFACT.exists() else ""
        if current != text:
            print(f"{ARTIFACT} is out of date: run `make contracts`", file=sys.stderr)
            return 1
        return 0
    ARTIFACT.write_text(text, encoding="utf-8")
    print(f"wrote {ARTIFACT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
