"""`lightpost doctor --config FILE`: ask each endpoint for what the config needs and print a
table (endpoints by label, never URL), the fix for each failure and a verdict.

The probes are lightpost.node.probe (shared with ``lightpost status``); the judgement is
lightpost.core.diagnosis. Exit 0 when at least ``quorum`` endpoints serve everything the config
needs at ``--level``, else 1.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lightpost.core.diagnosis import Cap, endpoint_failures, needs, verdict
from lightpost.node.config import VERIFICATION_LEVELS, DeviceConfig, load_config
from lightpost.node.probe import Probe, probe_endpoint, receives
from lightpost.node.runtime import build_endpoints, keystore_address

__all__ = ["DOCTOR_RPC_TIMEOUT_S", "cmd_doctor", "diagnose", "render"]

DOCTOR_RPC_TIMEOUT_S = 15.0
"""Deadline of one probe call: a wide eth_getLogs or a deep eth_getProof is slow on a busy node."""

MARK = {True: "ok", False: "FAIL", None: "-"}
"""Table cell of a finding: served, needed and not served, informational."""


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
    )
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
        probes = list(
            pool.map(
                lambda ep: probe_endpoint(
                    ep,
                    chain_id=config.chain_id,
                    finality_depth=config.finality_depth,
                    address=address,
                    inbox=config.inbox if config.mode == "channel" else None,
                ),
                endpoints,
            )
        )
    report = diagnose(config, args.level, probes)
    print(json.dumps(report, sort_keys=True) if args.json else render(report))
    return 0 if report["ok"] else 1
