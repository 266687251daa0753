"""`make reliability`: lightpost's reliability suite (issue 8), with a printed summary.

Scenarios (each runs against real anvil devnets, except the fuzzer):

1. ``sigkill``   -- `lightpost node` SIGKILLed at random points during a 1,000-message
   run and restarted; messages lost / duplicated, counted on chain.
2. ``lying``     -- the 8 kinds of lie of the LyingProxy, one liar of three endpoints, at
   every verification level; plus a hiding by every endpoint. Forgeries accepted (must be
   0), hidings detected.
3. ``reorg``     -- anvil_reorg of depth 1-3 after inclusion; exactly once on the final chain.
4. ``basefee``   -- base fee above the device's cap for 100 blocks: held, none sent, all
   delivered once after.
5. ``endpoints`` -- an endpoint down / slow / flapping (answers refused or lost).
6. ``funds``     -- device balance 0: held, not lost; delivered once after funding.
7. ``fuzz``      -- every decoder, >= 1,000,000 generated inputs each on all cores; crashes
   are exceptions other than lightpost's own error classes.
8. ``adversary`` -- the randomized adversarial harness (issue 12, tools/adversary.py):
   >= 10,000 rounds of sender steps and receiver polls with one lying endpoint of three,
   plus runs with two colluding liars; invariant violations by kind, seed and round.
   Its figures go to their own generated section of docs/benchmarks.md.
9. ``gateway`` -- issue 14's chaos run (tools/reliability_gateway.py): two `lightpost gateway
   run` processes share one Mosquitto; kill -9 of a gateway and of the broker at seeded random
   moments over 10,000 device records; lost / duplicated deliveries counted from the chain.
   Its details go to their own generated section of docs/benchmarks.md.

Usage: python tools/reliability.py [--quick] [--only NAME] [--write-docs] [--json PATH]

``--quick`` runs small sizes (development); ``--only NAME`` runs one scenario. With
``--write-docs`` the results replace the generated section of docs/benchmarks.md (the
section says which sizes ran). Exit status 1 if any scenario found a problem.
Reproduce a fuzz crash from its sample: ``--reproduce TARGET:SEED:CHUNK:INDEX``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import json
import os
import platform
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the scenarios reuse the integration tests' helpers

chain = importlib.import_module("reliability_chain")
fuzzing = importlib.import_module("reliability_fuzz")
adversary = importlib.import_module("adversary")
gateway_chaos = importlib.import_module("reliability_gateway")
reports = importlib.import_module("reports")

DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- BEGIN GENERATED RELIABILITY -->", "<!-- END GENERATED RELIABILITY -->"
ADV_BEGIN, ADV_END = "<!-- BEGIN GENERATED ADVERSARY -->", "<!-- END GENERATED ADVERSARY -->"
GW_BEGIN, GW_END = "<!-- BEGIN GENERATED GATEWAY-CHAOS -->", "<!-- END GENERATED GATEWAY-CHAOS -->"

FULL = {
    "sigkill": {"kills": 50, "messages": 1000},
    "lying": {"reps": 5},
    "reorg": {"runs": 30},
    "basefee": {"blocks": 100, "messages": 20},
    "endpoints": {"reps": 3, "messages": 10},
    "funds": {"runs": 10, "messages": 5},
    "fuzz": {"per_target": 1_000_000},
    "adversary": {"rounds": 5_000, "seeds": 2, "majority_rounds": 1_500, "max_drips": 3},
    "gateway": {"records": 10_000, "devices": 100, "kills": 4},
}
"""Sizes of `make reliability` (issue 8's numbers, issue 12's >= 10,000 adversarial rounds
with one liar; <= 35 min on the 2-core machine)."""

QUICK = {
    "sigkill": {"kills": 5, "messages": 100},
    "lying": {"reps": 1},
    "reorg": {"runs": 3},
    "basefee": {"blocks": 10, "messages": 5},
    "endpoints": {"reps": 1, "messages": 5},
    "funds": {"runs": 2, "messages": 3},
    "fuzz": {"per_target": 20_000},
    "adversary": {"rounds": 300, "seeds": 1, "majority_rounds": 150, "max_drips": 1},
    "gateway": {"records": 300, "devices": 10, "kills": 1},
}
"""Sizes of ``--quick`` (development)."""

SHORT_VERSIONS = {
    "sigkill": "tests/integration/test_send_anvil.py::test_sigkill_at_random_points_*",
    "lying": "tests/integration/test_receive_attacks.py (one liar, two liars, all hiding)",
    "reorg": "tests/integration/test_send_anvil.py::test_reorged_out_* (depth 1); "
    "tests/reliability/test_chain_scenarios.py::test_reorgs_of_depth_1_to_3",
    "basefee": "tests/integration/test_send_anvil.py::test_base_fee_above_the_cap_*",
    "endpoints": "tests/integration/test_send_anvil.py::test_stale_down_and_slow_*; "
    "tests/reliability/test_chain_scenarios.py::test_flapping_endpoints",
    "funds": "tests/node/test_sender.py::test_insufficient_funds_* (scripted chain); "
    "tests/reliability/test_chain_scenarios.py::test_insufficient_funds_on_anvil",
    "fuzz": "tests/reliability/test_fuzz.py",
    "adversary": "tests/reliability/test_adversary.py (EXPECT_FIXED switch)",
    "gateway": "tests/reliability/test_gateway_chaos.py; tests/device/test_receipt_scope.py, "
    "test_reconnect.py, test_broker_persistence.py",
}
"""Where each scenario's short version lives in `make test`."""

SCENARIOS = list(FULL)


class Clock:
    """Progress lines prefixed with the elapsed time."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, line: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}] {line}", flush=True)


def run_fuzz(per_target: int, progress: Callable[[str], None]) -> Any:
    started = time.monotonic()
    last: dict[str, float] = {}

    def throttled(line: str) -> None:
        name = line.split(":", 1)[0]
        now = time.monotonic()
        if now - last.get(name, 0) >= 10 or ": done," in line:
            last[name] = now
            progress("fuzz " + line)

    results = fuzzing.fuzz(list(fuzzing.TARGETS), per_target, progress=throttled)
    crashes = sum(r.crashes for r in results)
    inputs = sum(r.inputs for r in results)
    seconds = time.monotonic() - started
    outcome = chain.Outcome(
        f"Fuzzing {len(results)} decoders (random + mutated valid encodings)",
        f"{per_target:,} inputs x {len(results)} decoders = {inputs:,}",
        "crashes (exceptions other than lightpost's errors)",
        f"{crashes} crashes; {inputs / seconds:,.0f} inputs/s on {os.cpu_count()} processes",
        crashes == 0,
        seconds,
        {"decoders": [dataclasses.asdict(r) | {"rate": r.rate} for r in results]},
    )
    return outcome


def run_adversary(
    rounds: int, seeds: int, majority_rounds: int, max_drips: int, progress: Callable[[str], None]
) -> Any:
    """``seeds`` runs of ``rounds`` with one liar of three, then ``seeds`` runs of
    ``majority_rounds`` with two colluding liars (seeds 1..n each)."""
    started = time.monotonic()
    results = []
    for liars, size in ((1, rounds), (2, majority_rounds)):
        for seed in range(1, seeds + 1):
            r = adversary.run(size, liars=liars, seed=seed, max_drips=max_drips, progress=progress)
            progress(
                f"adversary: {liars} of 3 lying, seed {seed}: {r.rounds:,} rounds, "
                f"{sum(r.lies.values()):,} lies, {len(r.violations)} violations "
                f"{dict(r.violation_counts)}"
            )
            results.append(r)
    minority = [r for r in results if r.liars == 1]
    majority = [r for r in results if r.liars == 2]
    violations = sum(len(r.violations) for r in results)
    kinds = sum((r.violation_counts for r in results), Counter())
    return chain.Outcome(
        "Adversarial rounds: lying endpoints (1 of 3; 2 of 3 colluding) against sender and "
        "receiver at every level",
        f"{sum(r.rounds for r in minority):,} rounds with 1 liar, "
        f"{sum(r.rounds for r in majority):,} with 2; "
        f"{sum(r.messages for r in results):,} messages, "
        f"{sum(r.commands for r in results):,} commands",
        "invariant violations (see the adversary section)",
        f"{violations} violations"
        + (f" ({', '.join(f'{k} {n}' for k, n in kinds.most_common())})" if kinds else "")
        + f"; {sum(sum(r.lies.values()) for r in results):,} lies told",
        violations == 0,
        time.monotonic() - started,
        {"runs": [r.as_dict() for r in results], "results": results},
    )


def render_adversary(outcome: Any, *, mode: str) -> str:
    """The generated adversary section of docs/benchmarks.md."""
    results = outcome.details["results"]
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    by = {n: [r for r in results if r.liars == n] for n in (1, 2)}
    lies = {n: sum((r.lies for r in rs), Counter()) for n, rs in by.items()}
    bad = {n: sum((r.violation_counts for r in rs), Counter()) for n, rs in by.items()}
    allowed = {n: sum((r.allowed for r in rs), Counter()) for n, rs in by.items()}
    lines = [
        f"### Adversarial harness ({mode}; generated by `tools/reliability.py`)",
        "",
        f"Machine: {machine()}. Date: {date}. Run time: {outcome.seconds / 60:.1f} min.",
        "",
        "tools/adversary.py: one anvil, a sending and a receiving device, each with three",
        "endpoints to it; one (or two colluding) wrapped by a seeded in-process liar that",
        "rewrites answers of any method. A round is one `Sender.step`, one `Receiver.poll`",
        "(signed, included, final, complete in turn), one step of the receiving device's",
        "command agent, or one poll of a second subscription started with `since`; plus one",
        "mined block. Truth is the honest anvil. The invariants are listed in the module",
        "docstring of tools/adversary.py. With two liars, inclusion, finality, completeness",
        "and liveness may be bent (counted as *allowed*) but never silently, and signed",
        "content never.",
        "",
        "| liars | seed | rounds | messages (delivered at complete) | commands (executed) "
        "| lies | violations | time | peak RSS (process, so far) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.liars} of 3 | {r.seed} | {r.rounds:,} | {r.messages:,} "
            f"({r.delivered['complete']:,}) | {r.commands:,} "
            f"({r.delivered['commands executed']:,}) | {sum(r.lies.values()):,} | "
            f"{len(r.violations):,} | {r.seconds:.0f} s | {r.peak_rss_mib:.0f} MiB |"
        )
    lines += ["", "Lies told, per kind:", "", "| lie | 1 of 3 | 2 of 3 |", "|---|---:|---:|"]
    for kind in sorted(set(lies[1]) | set(lies[2]) | set(adversary.LIES)):
        lines.append(f"| {kind} | {lies[1][kind]:,} | {lies[2][kind]:,} |")
    lines += [
        "",
        "Invariant violations, per kind (allowed: what the adversary model concedes to a "
        "majority; first occurrence as seed/round):",
        "",
        "| invariant | 1 of 3 | 2 of 3 | 2 of 3 allowed | first seen |",
        "|---|---:|---:|---:|---|",
    ]
    first = {}
    for r in results:
        for v in r.violations:
            first.setdefault(v.kind, f"{r.liars} of 3, seed {v.seed}, round {v.round}")
    kinds = sorted(set(bad[1]) | set(bad[2]) | set(allowed[2]))
    for kind in kinds:
        lines.append(
            f"| {kind} | {bad[1][kind]:,} | {bad[2][kind]:,} | {allowed[2][kind]:,} | "
            f"{first.get(kind, '-')} |"
        )
    if not kinds:
        lines.append("| (none) | 0 | 0 | 0 | - |")
    return "\n".join(lines)


def run_gateway(records: int, devices: int, kills: int, progress: Callable[[str], None]) -> Any:
    r = gateway_chaos.chaos(
        records=records,
        devices=devices,
        gateway_kills=kills,
        broker_kills=kills,
        seed=1,
        progress=progress,
    )
    return chain.Outcome(
        "Two gateways on one Mosquitto; kill -9 of a gateway and of the broker at seeded random "
        "moments, each restarted",
        f"{r.gateway_kills} gateway kills + {r.broker_kills} broker kills; {r.records:,} records "
        f"from {r.devices} devices",
        "records lost / delivered twice, from the chain (relay rule, then the receiving rule)",
        f"{r.lost} lost, {r.duplicated} duplicated ({r.delivered:,} of {r.signed:,} records, "
        f"births included, delivered once; {r.anchored_twice:,} anchored twice, delivered once)",
        r.ok,
        r.seconds,
        r.as_dict(),
    )


def render_gateway(outcome: Any, *, mode: str) -> str:
    """The generated gateway chaos section of docs/benchmarks.md."""
    d = outcome.details
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    exits = sum(d["gateway_exits"].values())
    lines = [
        f"### Gateway chaos ({mode}; generated by `tools/reliability.py`)",
        "",
        f"Machine: {machine()}. Date: {date}. Run time: {outcome.seconds / 60:.1f} min "
        f"(publishing {d['publish_seconds']:.0f} s). Seed {d['seed']}.",
        "",
        "tools/reliability_gateway.py: anvil (1 s blocks), the anchoring contract, one Mosquitto",
        "(persistence, a save on every change), two `lightpost gateway run` processes in one",
        "shared-subscription group, each paying from its own key; simulated devices",
        "(lightpost.device, persistent sessions) publish round robin, reconnect when the broker",
        "drops them and republish retained records whose receipt is overdue. Truth is the chain:",
        "every batch event, its transaction proven in its block, each leaf's records (from any",
        "gateway's store) verified by the relay rule, then delivered once per (device, seq) by the",
        "chain-link rule.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| records signed by the devices (data + births) | {d['signed']:,} "
        f"({d['records']:,} + {d['births']:,}) |",
        f"| delivered once / lost / delivered twice / forged | {d['delivered']:,} / {d['lost']} "
        f"/ {d['duplicated']} / {d['forged']} |",
        f"| kills | {'; '.join(d['kills'])} |",
        f"| gateway exits on their own (broker gone), restarted | {exits} |",
        f"| anchor transactions / batches anchored twice | {d['anchor_txs']:,} / "
        f"{d['roots_anchored_twice']} |",
        f"| records anchored twice (republished to the other gateway, or re-anchored) | "
        f"{d['anchored_twice']:,} |",
        f"| replays dropped by the receiving rule (also: records below a leaf's head already "
        f"delivered through the other gateway) | {d['replays_dropped']:,} |",
        f"| records republished by devices / device reconnects | {d['republished']:,} / "
        f"{d['reconnects']:,} |",
    ]
    return "\n".join(lines)


def run(name: str, sizes: dict[str, Any], progress: Callable[[str], None]) -> Any:
    if name == "sigkill":
        return chain.sigkill(progress=progress, **sizes)
    if name == "lying":
        return chain.lying(progress=progress, **sizes)
    if name == "reorg":
        return chain.reorgs(progress=progress, **sizes)
    if name == "basefee":
        return chain.base_fee(progress=progress, **sizes)
    if name == "endpoints":
        return chain.endpoints(progress=progress, **sizes)
    if name == "funds":
        return chain.funds(progress=progress, **sizes)
    if name == "fuzz":
        return run_fuzz(progress=progress, **sizes)
    if name == "adversary":
        return run_adversary(progress=progress, **sizes)
    if name == "gateway":
        return run_gateway(progress=progress, **sizes)
    raise SystemExit(f"unknown scenario {name!r}; one of {', '.join(SCENARIOS)}")


def machine() -> str:
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {reports.anvil_version()}"
    )


def render(outcomes: list[Any], *, mode: str, total_s: float) -> str:
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"### Reliability ({mode}; generated by `tools/reliability.py`)",
        "",
        f"Machine: {machine()}. Date: {date}. Total run time: {total_s / 60:.1f} min.",
        "",
        "Truth is the chain: every inbox post of the device is fetched and decoded and its",
        "records counted (lost = a seq missing, duplicated = a seq more than once). A lie is",
        "*reported* when the receiver raises a problem (proof failure, disagreement, hidden,",
        "gap) for it; a lie that is neither reported nor harmful was outvoted by the honest",
        "endpoints. A fuzz *crash* is an exception that is not a lightpost error.",
        "",
        "| scenario | runs | what was counted | result | time | short version in `make test` |",
        "|---|---|---|---|---:|---|",
    ]
    for name, o in outcomes:
        verdict = "" if o.ok else " **FAILED**"
        if name == "adversary":
            verdict += " (details: the adversarial harness section)"
        if name == "gateway":
            verdict += " (details: the gateway chaos section)"
        lines.append(
            f"| {o.scenario} | {o.runs} | {o.counted} | {o.result}{verdict} | "
            f"{o.seconds:.0f} s | {SHORT_VERSIONS[name]} |"
        )
    lying = [o for name, o in outcomes if name == "lying"]
    if lying:
        levels = ("signed", "included", "final", "complete")
        lines += [
            "",
            "Lying endpoints per lie kind (one liar of three; per level: runs where the lie was",
            "reported / runs where it fired, i.e. changed an answer the receiver asked for):",
            "",
            "| lie | runs | forged accepted | honest lost | " + " | ".join(levels) + " |",
            "|---|---:|---:|---:|" + "---:|" * len(levels),
        ]
        for kind, c in lying[0].details["per_kind"].items():
            cells = [f"{c.get(f'{lv}: detected', 0)}/{c.get(f'{lv}: fired', 0)}" for lv in levels]
            lines.append(
                f"| {kind} | {c['runs']} | {c['forged']} | {c['lost']} | "
                + " | ".join(cells)
                + " |"
            )
    fuzz = [o for name, o in outcomes if name == "fuzz"]
    if fuzz:
        lines += [
            "",
            "Per decoder (refused = a lightpost error, the expected answer to bad input):",
            "",
            "| decoder | inputs | accepted | refused | crashes | inputs/s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for d in fuzz[0].details["decoders"]:
            lines.append(
                f"| `{d['what']}` | {d['inputs']:,} | {d['accepted']:,} | {d['refused']:,} | "
                f"{d['crashes']} | {d['rate']:,.0f} |"
            )
    return "\n".join(lines)


def write_docs(
    section: str | None, adversary_section: str | None = None, gateway_section: str | None = None
) -> None:
    """Put ``section`` between the reliability markers of docs/benchmarks.md, and the
    adversary and gateway sections between their own (each only when its scenarios ran)."""
    if section is not None:
        reports.write_section(DOC, section, BEGIN, END)
    if adversary_section is not None:
        reports.write_section(DOC, adversary_section, ADV_BEGIN, ADV_END)
    if gateway_section is not None:
        reports.write_section(DOC, gateway_section, GW_BEGIN, GW_END)


def reproduce(spec: str) -> int:
    name, seed, chunk, index = spec.split(":")
    value = fuzzing.regenerate(name, int(seed), int(chunk), int(index))
    print(f"input: {value!r}")
    fuzzing.TARGETS[name].run(value)  # raises the crash, with its traceback
    print("no exception")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for development")
    ap.add_argument("--only", choices=SCENARIOS, help="run one scenario")
    ap.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    ap.add_argument("--json", type=Path, help="write every detail as JSON to this file")
    ap.add_argument("--reproduce", metavar="TARGET:SEED:CHUNK:INDEX", help="rerun a fuzz input")
    args = ap.parse_args(argv)
    # Interrupted (Ctrl-C, or SIGTERM/SIGINT when run in the background): unwind, so that
    # every scenario's `finally` stops its anvil, node processes and proxies.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.reproduce:
        return reproduce(args.reproduce)
    sizes = QUICK if args.quick else FULL
    names = [args.only] if args.only else SCENARIOS
    clock = Clock()
    outcomes = []
    for name in names:
        clock(f"{name}: starting {sizes[name]}")
        try:
            outcome = run(name, sizes[name], clock)
        except Exception as exc:  # a scenario that cannot finish is a failed row
            outcome = chain.Outcome(
                name, "-", "-", f"did not finish: {type(exc).__name__}: {exc}", False
            )
        outcomes.append((name, outcome))
        clock(f"{name}: {'ok' if outcome.ok else 'FAILED'} -- {outcome.result}")
    total = time.monotonic() - clock.started
    mode = "quick sizes" if args.quick else "full sizes"
    if args.only:
        mode += f", only `{args.only}`"
    section = render(outcomes, mode=mode, total_s=total)
    print("\n" + section + "\n")
    adv = [o for n, o in outcomes if n == "adversary" and "results" in o.details]
    adversary_section = render_adversary(adv[0], mode=mode) if adv else None
    if adversary_section:
        print(adversary_section + "\n")
    gw = [o for n, o in outcomes if n == "gateway" and "kills" in o.details]
    gateway_section = render_gateway(gw[0], mode=mode) if gw else None
    if gateway_section:
        print(gateway_section + "\n")
    for _, o in outcomes:
        o.details.pop("results", None)  # the dataclasses; "runs" has them as plain data
    if args.json:
        args.json.write_text(
            json.dumps([dataclasses.asdict(o) for _, o in outcomes], indent=2, default=str)
        )
    if args.write_docs:
        own_section = args.only in ("adversary", "gateway")
        write_docs(None if own_section else section, adversary_section, gateway_section)
        print(f"wrote {DOC.relative_to(ROOT)}")
    failed = [n for n, o in outcomes if not o.ok]
    for n, o in outcomes:
        if not o.ok:
            print(f"FAILED {n}: {json.dumps(o.details, default=str)[:3000]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
