"""`lightpost doctor --config FILE`: ask each endpoint for what the config needs and print a
table (endpoints by label, never URL), the fix for each failure and a verdict.

The probes are lightpost.node.probe (shared with ``lightpost status``), the judgement
lightpost.core.diagnosis; what only the doctor asks -- how far back state is served, the
eth_getLogs caps an endpoint states, unfiltered logs -- and its verdict are here (the device core
stays small). Exit 0 when at least ``quorum`` endpoints serve everything the config needs at
``--level``, else 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lightpost.adapters.rpc import Endpoint
from lightpost.core.diagnosis import Cap, Finding, endpoint_failures, failure_text, needs
from lightpost.core.gas import TX_BASE_GAS
from lightpost.core.rpcfields import parse_quantity
from lightpost.errors import LightpostError
from lightpost.node.config import VERIFICATION_LEVELS, DeviceConfig, load_config
from lightpost.node.probe import Probe, ask, logs, probe_endpoint, proof_at, receives
from lightpost.node.receiver_channel import LOG_PAGE_BLOCKS
from lightpost.node.runtime import build_endpoints, chain_format, keystore_address

__all__ = [
    "DOCTOR_RPC_TIMEOUT_S",
    "ESTIMATE_FIX",
    "STATE_DEPTHS",
    "cmd_doctor",
    "diagnose",
    "estimate_finding",
    "estimates",
    "logs_caps",
    "render",
    "state_finding",
    "stated_limit",
    "verdict",
]

DOCTOR_RPC_TIMEOUT_S = 15.0
"""Deadline of one probe call: a wide eth_getLogs or a deep eth_getProof is slow on a busy node."""

MARK = {True: "ok", False: "FAIL", None: "-"}
"""Table cell of a finding: served, needed and not served, informational."""

STATE_DEPTHS = (128, 1024, 100_000)
"""Blocks below final eth_getProof is tried at: geth's full-node state window (128), then deeper
(an archive node serves all)."""

ESTIMATE_FIX = (
    "use endpoints that serve eth_estimateGas: on this chain the gas limit must also buy the L1 "
    'data component; [profile] gas_limit_source = "local" only where gas has none'
)
"""What to do when an endpoint cannot estimate gas on a chain whose profile needs it."""

_LIMIT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"more than ([0-9][0-9,]*k?) (?:results|logs)"), "results"),
    (re.compile(r"([0-9][0-9,]*k?) logs"), "results"),
    (re.compile(r"([0-9][0-9,]*k?)[ -]?blocks?\b"), "blocks"),
    (re.compile(r"block range[^0-9]{0,24}([0-9][0-9,]*k?)"), "blocks"),
    (re.compile(r"range (?:limit|of) ([0-9][0-9,]*k?)"), "blocks"),
)
"""Providers' wordings of an eth_getLogs cap (Infura, Alchemy, QuickNode, geth, reth, Erigon)."""


def stated_limit(text: str) -> tuple[str, int] | None:
    """The cap an eth_getLogs error states first: ("blocks" | "results", n); None if none."""
    low = text.lower()
    found = [(m.start(), m[1], kind) for p, kind in _LIMIT_PATTERNS for m in p.finditer(low)]
    if not found:
        return None
    _, digits, kind = min(found)
    number = digits.replace(",", "")
    return kind, int(number.rstrip("k")) * (1000 if number.endswith("k") else 1)


def logs_caps(finding: Finding, wide: object) -> Finding:
    """The eth_getLogs finding with what the endpoint states of its caps (in its refusal of the
    paged range, or of the unfiltered ``wide`` query) and how many unfiltered logs it served."""
    caps = []
    own = finding.detail.partition(": ")[2] if finding.ok is False else ""  # the endpoint's text
    for text in (own, failure_text(wide) if isinstance(wide, LightpostError) else ""):
        limit = stated_limit(text)
        if limit is not None:
            caps.append(f"{limit[1]} {limit[0]}")
    extra = f" (states a cap of {', '.join(caps)})" if caps else ""
    if isinstance(wide, list):
        extra += f"; {len(wide)} unfiltered logs served in one answer"
    return dataclasses.replace(finding, detail=finding.detail + extra)


def state_finding(depths: Sequence[tuple[int, str | None]]) -> Finding:
    """How far back eth_getProof is served: (blocks below final, None if it verified else why)."""
    if not depths:
        return Finding(cap=Cap.STATE, ok=None, detail="not asked (the chain is too short)")
    deepest = max((d for d, why in depths if why is None), default=0)
    failed = [(d, why) for d, why in depths if why is not None]
    if failed:
        d, why = min(failed)
        return Finding(
            cap=Cap.STATE, ok=None, detail=f"served {deepest} blocks below final, not {d}: {why}"
        )
    return Finding(cap=Cap.STATE, ok=None, detail=f"served at least {deepest} blocks below final")


def verdict(failures: Mapping[str, Sequence[Finding]], quorum: int) -> tuple[bool, str]:
    """(ok, one line): ok when at least ``quorum`` endpoints serve everything needed."""
    good = sorted(label for label, failed in failures.items() if not failed)
    bad = {label: failed for label, failed in failures.items() if failed}
    why = "; ".join(
        f"{label}: " + ", ".join(f"{f.cap} ({f.detail})" for f in failed)
        for label, failed in sorted(bad.items())
    )
    if len(good) >= quorum:
        head = f"ok: {len(good)} of {len(failures)} endpoints serve what the config needs"
        return True, head + (f" (not: {why})" if bad else "")
    return False, (
        f"not ok: {len(good)} of {len(failures)} endpoints serve what the config needs, "
        f"quorum is {quorum}: {why}"
    )


def estimates(config: DeviceConfig) -> bool:
    """Whether the config's sender finds its gas limit by eth_estimateGas (core.gas)."""
    return config.profile is not None and config.profile.gas_limit_source == "estimate"


def estimate_finding(answer: object) -> Finding:
    """eth_estimateGas of a plain self-transfer: a quantity >= 21,000 (above it: the chain's L1
    component, as on Arbitrum), else the reason and the fix."""
    try:
        gas = parse_quantity(answer, "gas estimate")
    except LightpostError as exc:
        why = failure_text(answer if isinstance(answer, LightpostError) or answer is None else exc)
        return Finding(cap=Cap.ESTIMATE, ok=False, detail=why, fix=ESTIMATE_FIX)
    if gas < TX_BASE_GAS:
        return Finding(
            cap=Cap.ESTIMATE, ok=False, detail=f"{gas} gas, below 21000", fix=ESTIMATE_FIX
        )
    extra = f" ({gas - TX_BASE_GAS} above intrinsic: the L1 component)" if gas > TX_BASE_GAS else ""
    return Finding(cap=Cap.ESTIMATE, ok=True, detail=f"{gas} gas for a transfer{extra}")


def examine(ep: Endpoint, config: DeviceConfig, address: bytes) -> Probe:
    """node.probe's findings, and what only the doctor asks: state history, stated log caps."""
    inbox = config.inbox if config.mode == "channel" else None
    fmt = chain_format(config)
    logs_range = LOG_PAGE_BLOCKS if config.profile is None else config.profile.logs_block_range
    probe = probe_endpoint(
        ep,
        chain_id=config.chain_id,
        finality_depth=config.finality_depth,
        address=address,
        inbox=inbox,
        fmt=fmt,
        logs_range=logs_range,
    )
    final = probe.final
    if final is None:
        return probe
    findings = []
    for found in probe.findings:
        if found.cap is Cap.LOGS:
            found = logs_caps(found, logs(ep, final - logs_range + 1, final, None))
        findings.append(found)
    depths: list[tuple[int, str | None]] = []
    for depth in (d for d in STATE_DEPTHS if d <= final):
        depths.append((depth, proof_at(ep, address, final - depth, fmt)))
        if depths[-1][1] is not None:
            break
    findings.append(state_finding(depths))
    if estimates(config):
        transfer = {"from": "0x" + address.hex(), "to": "0x" + address.hex()}
        findings.append(estimate_finding(ask(ep, "eth_estimateGas", [transfer])))
    return dataclasses.replace(probe, findings=tuple(findings))


def add_doctor(sub: Any) -> str:
    doctor = sub.add_parser("doctor", help="ask each endpoint for what the config needs")
    doctor.add_argument("--config", required=True)
    doctor.add_argument(
        "--level",
        choices=VERIFICATION_LEVELS,
        default="final",
        help="the receiving level to check for (default: final)",
    )
    doctor.add_argument("--json", action="store_true")
    return "lightpost_operator.doctor:cmd_doctor"


def diagnose(config: DeviceConfig, level: str, probes: list[Probe]) -> dict[str, Any]:
    """The report as a JSON-ready dict: per endpoint its findings and failures, the verdict."""
    need = needs(
        mode=config.mode,
        level=level,
        finality_depth=config.finality_depth,
        receives=receives(config),
    ) | ({Cap.ESTIMATE} if estimates(config) else set())
    failures = {p.label: endpoint_failures(p.findings, need) for p in probes}
    ok, line = verdict(failures, config.quorum)
    return {
        "level": level,
        "mode": config.mode,
        "quorum": config.quorum,
        "needs": sorted(str(c) for c in need),
        "endpoints": [
            {
                "label": p.label,
                "latest": p.latest,
                "final": p.final,
                "findings": [
                    {
                        "capability": str(f.cap),
                        "ok": f.ok,
                        "needed": f.cap in need,
                        "detail": f.detail,
                        "fix": f.fix,
                    }
                    for f in p.findings
                ],
                "failures": [str(f.cap) for f in failures[p.label]],
            }
            for p in probes
        ],
        "ok": ok,
        "verdict": line,
    }


def render(report: dict[str, Any]) -> str:
    """The table, the fixes, the verdict."""
    width = max(len(str(c)) for c in Cap)
    lines = [
        f"lightpost doctor: {report['mode']} mode, level {report['level']}, "
        f"quorum {report['quorum']}; needs: {', '.join(report['needs'])}"
    ]
    fixes = []
    for ep in report["endpoints"]:
        lines.append("")
        lines.append(f"{ep['label']}  (latest {ep['latest']}, final {ep['final']})")
        for f in ep["findings"]:
            mark = MARK[f["ok"]] if f["needed"] or f["ok"] is not False else "warn"
            lines.append(f"  {f['capability']:<{width}}  {mark:<4}  {f['detail']}")
            if f["ok"] is False and f["fix"]:
                fixes.append(f"{ep['label']} {f['capability']}: {f['fix']}")
    if fixes:
        lines.append("")
        lines += ["fix:  " + fix for fix in fixes]
    lines.append("")
    lines.append("verdict: " + report["verdict"])
    return "\n".join(lines)


def cmd_doctor(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    address = keystore_address(config) or config.inbox or bytes(20)
    endpoints = build_endpoints(config, timeout=DOCTOR_RPC_TIMEOUT_S)
    with ThreadPoolExecutor(max_workers=len(endpoints)) as pool:
        probes = list(pool.map(lambda ep: examine(ep, config, address), endpoints))
    report = diagnose(config, args.level, probes)
    from lightpost.node import probe

    beacon = probe.beacon_probe(config)
    if beacon is not None:  # trust = beacon/both: the light client's endpoints and stored state
        from lightpost_beacon.probe import render_rows

        report["beacon"] = light = beacon()
        report["ok"] = report["ok"] and not light["reasons"]
        report["verdict"] += "".join(f"; {r}" for r in light["reasons"])
        if not args.json:
            print("\n".join(render_rows(light)) + "\n")
    print(json.dumps(report, sort_keys=True) if args.json else render(report))
    return 0 if report["ok"] else 1
