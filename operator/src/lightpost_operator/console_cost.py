"""The console's cost figures: gas per device and per reading, measured from receipts, against
the paper's one transaction per reading, projected per day and month (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightpost_agent.command import COMMANDS_CHANNEL, RESULTS_CHANNEL

__all__ = ["COMMAND_CHANNELS", "DAY_S", "MAX_PAPER", "MAX_TXS", "MONTH_DAYS", "cost_figures"]

MAX_TXS = 512
"""Transactions whose gas is remembered: the cost figures and projection are over this recent
window (minutes of a city's traffic; ~1.3 KB each)."""

MAX_PAPER = 8 * MAX_TXS
"""Messages whose paper cost is remembered: every message of the :data:`MAX_TXS` transactions in
the cost window at up to eight per transaction (the demo batches about five); ~270 bytes each,
~1.1 MB when full (measured with tracemalloc)."""

DAY_S = 86_400
"""Seconds per day, for the cost projection."""

MONTH_DAYS = 30
"""Days per month, for the cost projection."""

COMMAND_CHANNELS = frozenset({COMMANDS_CHANNEL, RESULTS_CHANNEL})
"""Channels that carry commands and results rather than readings."""


def cost_figures(
    *,
    tx_gas: Mapping[str, int],
    tx_messages: Mapping[str, set[str]],
    tx_sender: Mapping[str, str],
    tx_time: Mapping[str, float],
    paper: Mapping[str, tuple[int, bool]],
    names: Mapping[str, str],
    base_fee_wei: int | None,
) -> dict[str, Any]:
    """Gas per device and per reading (measured: receipts' gasUsed, each transaction's split
    over the messages it carried a record or a chunk of, so a chunked message costs all its
    transactions), against the paper's one transaction per reading (the same gas schedule,
    lightpost.core.gas.gas_used, on each payload alone), projected per day and month at the
    current base fee from the observed rate. A reading counts once the gas of every transaction
    it is known in is known."""
    per_device: dict[str, dict[str, Any]] = {}
    share: dict[str, float] = {}
    waiting: set[str] = set()
    total_gas = 0
    times: list[float] = []
    for tx, keys in tx_messages.items():
        gas = tx_gas.get(tx)
        sender = tx_sender.get(tx)
        if gas is None:
            waiting.update(keys)
            continue
        if not keys or sender is None:
            continue
        row = per_device.setdefault(sender, {"gas": 0, "txs": 0, "keys": set()})
        row["gas"] += gas
        row["txs"] += 1
        row["keys"].update(keys)
        total_gas += gas
        times.append(tx_time.get(tx, 0.0))
        for key in keys:
            share[key] = share.get(key, 0.0) + gas / len(keys)
    paper_of = {k: paper[k][0] for k in share if k in paper}
    total_paper = sum(paper_of.values())
    reading_keys = [k for k in paper_of if k not in waiting and paper[k][1]]
    readings = len(reading_keys)
    reading_gas = sum(share[k] for k in reading_keys)
    reading_paper = sum(paper_of[k] for k in reading_keys)
    rows = []
    for address, row in per_device.items():
        count = len(row["keys"])
        rows.append(
            {
                "address": address,
                "name": names.get(address) or address[:10],
                "gas": row["gas"],
                "txs": row["txs"],
                "messages": count,
                "per_message": round(row["gas"] / count),
                "paper_per_message": _mean([paper_of[k] for k in row["keys"] if k in paper_of]),
            }
        )
    rows.sort(key=lambda r: str(r["name"]))
    window = (max(times) - min(times)) if len(times) > 1 else 0.0
    fee = base_fee_wei

    def project(gas: int) -> dict[str, Any] | None:
        if window <= 0 or fee is None:
            return None
        per_day_gas = gas / window * DAY_S
        return {
            "gas_per_day": round(per_day_gas),
            "wei_per_day": round(per_day_gas * fee),
            "wei_per_month": round(per_day_gas * fee * MONTH_DAYS),
        }

    return {
        "devices": rows,
        "total_gas": total_gas,
        "readings": readings,
        "per_reading": round(reading_gas / readings) if readings else None,
        "paper_per_reading": round(reading_paper / readings) if readings else None,
        "base_fee_wei": fee,
        "window_s": round(window, 1),
        "projection": project(total_gas),
        "paper_projection": project(total_paper),
    }


def _mean(values: list[int]) -> int | None:
    return round(sum(values) / len(values)) if values else None
