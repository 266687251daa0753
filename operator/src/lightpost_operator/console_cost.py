"""The console's cost figures: gas per device and per reading, measured from receipts, against
the paper's one transaction per reading, projected per day and month (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lightpost_agent.command import COMMANDS_CHANNEL, RESULTS_CHANNEL

if TYPE_CHECKING:
    from lightpost_operator.console_model import _Message

__all__ = ["COMMAND_CHANNELS", "DAY_S", "MAX_TXS", "MONTH_DAYS", "cost_figures"]

MAX_TXS = 512
"""Transactions whose gas is remembered: the cost figures and projection are over this recent
window (minutes of a city's traffic; ~1.3 KB each)."""

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
    messages: Mapping[str, _Message],
    names: Mapping[str, str],
    base_fee_wei: int | None,
) -> dict[str, Any]:
    """Gas per device and per reading (measured: receipts' gasUsed, split over the messages a
    transaction carried), against the paper's one transaction per reading (the same gas
    schedule, lightpost.core.gas.gas_used, on each payload alone), projected per day and
    month at the current base fee from the observed rate."""
    per_device: dict[str, dict[str, Any]] = {}
    total_gas = total_paper = readings = reading_gas = reading_paper = 0
    times: list[float] = []
    for tx, gas in tx_gas.items():
        keys = tx_messages.get(tx)
        sender = tx_sender.get(tx)
        if not keys or sender is None:
            continue
        msgs = [messages[k] for k in keys if k in messages]
        paper = sum(m.paper_gas for m in msgs)
        row = per_device.setdefault(sender, {"gas": 0, "txs": 0, "messages": 0, "paper": 0})
        row["gas"] += gas
        row["txs"] += 1
        row["messages"] += len(keys)
        row["paper"] += paper
        total_gas += gas
        total_paper += paper
        times.append(tx_time.get(tx, 0.0))
        reading_msgs = [m for m in msgs if m.channel not in COMMAND_CHANNELS]
        if reading_msgs and len(reading_msgs) == len(keys):
            readings += len(reading_msgs)
            reading_gas += gas
            reading_paper += paper
    rows = []
    for address, row in per_device.items():
        rows.append(
            {
                "address": address,
                "name": names.get(address) or address[:10],
                "gas": row["gas"],
                "txs": row["txs"],
                "messages": row["messages"],
                "per_message": round(row["gas"] / row["messages"]),
                "paper_per_message": round(row["paper"] / row["messages"]),
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
