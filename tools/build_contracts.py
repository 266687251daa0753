"""Regenerate the contract artifacts from their assembly sources (`make contracts`): the inbox
(lightpost_operator/inbox.json) and the anchoring contract (lightpost_gateway/anchor.json).

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

__all__ = [
    "ANCHOR_ARTIFACT",
    "ANCHOR_SOURCE",
    "ARTIFACT",
    "SOURCE",
    "build_anchor",
    "build_contract",
    "build_inbox",
    "main",
    "render",
]

CONTRACTS_DIR = Path(__file__).resolve().parents[1] / "operator" / "src" / "lightpost_operator"
SOURCE = CONTRACTS_DIR / "inbox.easm"
"""The inbox's assembly source."""

ARTIFACT = CONTRACTS_DIR / "inbox.json"
"""The generated artifact read by lightpost_operator.contracts (deploying is the operator's)."""

EVENT_SIGNATURE = "LightpostPostV1(bytes32,address,address,uint256,bytes)"
"""Must match the source's ``.const EVENT_TOPIC keccak(...)`` (checked below)."""

ANCHOR_DIR = Path(__file__).resolve().parents[1] / "gateway" / "src" / "lightpost_gateway"
ANCHOR_SOURCE = ANCHOR_DIR / "anchor.easm"
"""The anchoring contract's assembly source (issue 14; lightpost-gateway, not the device core)."""

ANCHOR_ARTIFACT = ANCHOR_DIR / "anchor.json"
"""The generated artifact read by lightpost_gateway.anchor."""

ANCHOR_EVENT_SIGNATURE = "LightpostBatchV1(address,uint256,bytes32)"
"""Must match anchor.easm's ``.const EVENT_TOPIC keccak(...)``."""


def build_contract(source: str, event_signature: str) -> dict[str, str]:
    """The artifact dict for a contract source text whose EVENT_TOPIC is ``event_signature``."""
    runtime = assemble(source)
    topic = constants(source)["EVENT_TOPIC"].to_bytes(32, "big")
    if topic != keccak256(event_signature.encode()):
        raise SystemExit("EVENT_TOPIC in the source does not match its event signature")
    return {
        "runtime": "0x" + runtime.hex(),
        "initcode": "0x" + deploy_wrapper(runtime).hex(),
        "event_signature": event_signature,
        "event_topic": "0x" + topic.hex(),
        "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
    }


def build_inbox(source: str) -> dict[str, str]:
    """The artifact dict for an inbox source text."""
    return build_contract(source, EVENT_SIGNATURE)


def build_anchor(source: str) -> dict[str, str]:
    """The artifact dict for an anchoring-contract source text."""
    return build_contract(source, ANCHOR_EVENT_SIGNATURE)


def render(artifact: dict[str, str]) -> str:
    """The exact text written to the artifact file (stable key order, final newline)."""
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, verify) the inbox and anchoring-contract artifacts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if an artifact is stale")
    args = parser.parse_args(argv)
    stale = 0
    for source, artifact, build in (
        (SOURCE, ARTIFACT, build_inbox),
        (ANCHOR_SOURCE, ANCHOR_ARTIFACT, build_anchor),
    ):
        text = render(build(source.read_text(encoding="utf-8")))
        if args.check:
            current = artifact.read_text(encoding="utf-8") if artifact.exists() else ""
            if current != text:
                print(f"{artifact} is out of date: run `make contracts`", file=sys.stderr)
                stale = 1
            continue
        artifact.write_text(text, encoding="utf-8")
        print(f"wrote {artifact}")
    return stale


if __name__ == "__main__":
    raise SystemExit(main())
