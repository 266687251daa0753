"""`lightpost fleet provision`: N device keys and configs, funded by a funder key under a hard cap.

Theory of operation:

1. Keys and configs (no money moves): ``DIR/device-<i>.password`` (random, 0600),
   ``device-<i>.keystore.json`` (standard scrypt unless ``--devnet``), ``device-<i>.toml`` (as
   ``lightpost init`` writes it). What exists is kept, so a re-run creates only what is missing.
2. The plan (pure: :func:`plan_funding`): each device's target is what its stated reading rate
   costs (:func:`device_budget_wei`: readings x measured gas per reading x a gas price, plus the
   first post's one-time storage cost); a device is topped up only to that target, from its
   quorum-agreed balance, so a re-run never funds a funded device again. The total -- values plus
   the most every transfer can cost in fees -- above ``--cap-eth`` is refused: never sent, never
   partly sent.
3. Spending only with ``--yes``, and only while the funder has no transaction in flight (pending
   nonce = latest nonce; otherwise a re-run could count a pending transfer's device as unfunded).
   Transfers carry the very fee cap the plan priced, go to every endpoint, and are waited for
   until their receipt is proven in a quorum-agreed block (:meth:`Chain.wait_receipt`).

On an L2 the plan adds what posting the data to L1 costs (lightpost_operator.l1fee, agreed by a
majority of the endpoints): per reading and per transfer the OP-stack GasPriceOracle's getL1Fee of
a signed sample of that size; on Arbitrum the NodeInterface's L1 component per reading, and the
transfers' gas limit by eth_estimateGas (core.gas.estimated_gas_limit). ``--transfer-overhead-wei``
adds a measured figure of your own per transfer.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.fees import Eip1559FeePolicy, FeeQuote
from lightpost.core.gas import TX_BASE_GAS
from lightpost.core.keys import PrivateKey, parse_address, to_checksum_address
from lightpost.core.keystore import decrypt_key
from lightpost.core.l2 import block_format
from lightpost.core.profiles import chain_profile
from lightpost.errors import ChainProcessError, ConfigError, KeystoreError, NodeError, PolicyError
from lightpost.node.chain import Chain, parse_quantity
from lightpost.node.config import is_minority_quorum
from lightpost_operator.key_cmd import ask_password, write_new_private
from lightpost_operator.keywrite import (
    LIGHT_SCRYPT_N,
    LIGHT_SCRYPT_P,
    SCRYPT_N,
    SCRYPT_P,
    encrypt_key,
    generate_key,
)
from lightpost_operator.l1fee import estimated_transfer_gas, l1_fee_wei, sample_post
from lightpost_operator.provision import (
    SubParsers,
    add_endpoint_args,
    parse_inbox,
    read_endpoints,
    render_config,
    write_config,
)
from lightpost_operator.wallet import sign_operator_tx

__all__ = [
    "FIRST_POST_EXTRA_GAS",
    "GAS_PER_READING",
    "FundingPlan",
    "add_fleet",
    "device_budget_wei",
    "format_ether",
    "parse_amount",
    "plan_funding",
    "provision_fleet",
]

WEI_PER_ETH = 10**18
"""Wei per ether."""

GWEI = 10**9
"""Wei per gwei."""

GAS_PER_READING = 37_454
"""Gas of one 100-byte JSON reading sent alone in a channel-mode post (a later post, uncompressed):
docs/benchmarks.md gas table, real receipts on anvil 1.7.1 with EIP-7623. The worst case: batching
20 readings per post costs 2,494 gas per reading (same table); pass --gas-per-reading for that."""

FIRST_POST_EXTRA_GAS = 71_246 - GAS_PER_READING
"""One-time extra of a device's first post on a channel (the inbox's two zero-to-nonzero SSTOREs):
71,246 gas for one reading vs 37,454 later (docs/benchmarks.md, the paragraph above the table)."""

TRANSFER_GAS = TX_BASE_GAS
"""Gas of a plain value transfer to an account without code (yellow paper G_transaction)."""

PASSWORD_BYTES = 24
"""Random bytes behind each device's keystore password (URL-safe base64 in ``<name>.password``)."""

RECEIPT_TIMEOUT_S = 600.0
"""Longest wait for one funding transfer's proven receipt (50 mainnet slots)."""


# --- pure planning ---


def device_budget_wei(
    *,
    readings_per_day: int,
    days: int,
    gas_per_reading: int,
    gas_price: int,
    first_post_gas: int = FIRST_POST_EXTRA_GAS,
    l1_fee_per_reading: int = 0,
) -> int:
    """What one device spends in ``days`` at its reading rate: every reading's gas plus the first
    post's one-time extra, at ``gas_price`` wei per gas, plus every reading's L1 data fee (wei)."""
    for name, value in (
        ("readings per day", readings_per_day),
        ("days", days),
        ("gas per reading", gas_per_reading),
        ("gas price", gas_price),
        ("first post gas", first_post_gas),
        ("L1 fee per reading", l1_fee_per_reading),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PolicyError("invalid-input", f"{name} must be a non-negative integer")
    readings = readings_per_day * days
    return (readings * gas_per_reading + first_post_gas) * gas_price + readings * l1_fee_per_reading


@dataclass(frozen=True, slots=True, kw_only=True)
class FundingPlan:
    """Who gets how much: ``topups`` (device name, wei) only for devices below ``target_wei``."""

    target_wei: int
    topups: tuple[tuple[str, int], ...]
    transfer_cost_wei: int
    """The most one funding transfer can cost in fees (gas limit x fee cap + overhead)."""
    cap_wei: int

    @property
    def value_wei(self) -> int:
        return sum(v for _, v in self.topups)

    @property
    def fees_wei(self) -> int:
        return len(self.topups) * self.transfer_cost_wei

    @property
    def total_wei(self) -> int:
        """The most the funder can spend on this plan: values plus every transfer's fee bound."""
        return self.value_wei + self.fees_wei


def plan_funding(
    balances: Mapping[str, int], *, target_wei: int, transfer_cost_wei: int, cap_wei: int
) -> FundingPlan:
    """Top every device up to ``target_wei`` (never beyond: a funded device gets nothing); refused
    (PolicyError ``fleet-cap``) when the total bound exceeds ``cap_wei``."""
    for name, value in (
        ("target", target_wei),
        ("transfer cost", transfer_cost_wei),
        ("cap", cap_wei),
        *((f"balance of {n}", b) for n, b in balances.items()),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PolicyError("invalid-input", f"{name} must be a non-negative integer of wei")
    topups = tuple((n, target_wei - b) for n, b in balances.items() if b < target_wei)
    plan = FundingPlan(
        target_wei=target_wei, topups=topups, transfer_cost_wei=transfer_cost_wei, cap_wei=cap_wei
    )
    if plan.total_wei > cap_wei:
        raise PolicyError(
            "fleet-cap",
            f"funding {len(topups)} device(s) to {format_ether(target_wei)} ETH each costs up to "
            f"{format_ether(plan.total_wei)} ETH, above the cap of {format_ether(cap_wei)} ETH; "
            "lower --devices, --readings-per-day or --days, or raise --cap-eth",
        )
    return plan


def format_ether(wei: int, unit: int = WEI_PER_ETH) -> str:
    """Exact decimal ether (or gwei with ``unit=GWEI``): no float rounding."""
    whole, frac = divmod(wei, unit)
    return f"{whole}.{frac:0{len(str(unit)) - 1}d}".rstrip("0").rstrip(".")


def parse_amount(text: str, what: str, unit: int = WEI_PER_ETH) -> int:
    """A decimal amount of ether (or of ``unit``) as exact wei; one ConfigError line if not one."""
    try:
        amount = Decimal(text.strip()) * unit
    except InvalidOperation:
        raise ConfigError(f"{what} must be a decimal number") from None
    if not amount.is_finite() or amount < 0 or amount != amount.to_integral_value():
        raise ConfigError(f"{what} must be a non-negative amount, exact to the wei")
    return int(amount)


# --- keys and configs ---


def _device_identity(directory: Path, name: str, *, devnet: bool) -> bytes:
    """Create what is missing of ``name``'s password and keystore; return its address."""
    pw_path = directory / f"{name}.password"
    ks_path = directory / f"{name}.keystore.json"
    if ks_path.exists():
        try:
            return parse_address("0x" + str(json.loads(ks_path.read_text())["address"])[-40:])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeystoreError(f"{ks_path} is not a keystore with an address: {exc}") from None
    if not pw_path.exists():
        write_new_private(pw_path, base64.urlsafe_b64encode(os.urandom(PASSWORD_BYTES)).decode())
    key = generate_key(os.urandom)
    n, p = (LIGHT_SCRYPT_N, LIGHT_SCRYPT_P) if devnet else (SCRYPT_N, SCRYPT_P)
    password = pw_path.read_text(encoding="utf-8").rstrip("\r\n")
    doc = encrypt_key(key, password, randbytes=os.urandom, scrypt_n=n, scrypt_p=p)
    write_new_private(ks_path, json.dumps(doc, indent=2) + "\n")
    return key.address


# --- the command ---


def add_fleet(sub: SubParsers) -> str:
    fleet = sub.add_parser("fleet", help="provision and fund many devices under a hard cap")
    fsub = fleet.add_subparsers(dest="fleet_cmd", required=True, metavar="{provision}")
    prov = fsub.add_parser("provision", help="N device keys + configs, funded from a funder key")
    add_endpoint_args(prov)
    prov.add_argument("--dir", required=True, help="where the device files go (created)")
    prov.add_argument("--devices", type=int, required=True)
    prov.add_argument("--funder-keystore", required=True)
    prov.add_argument("--password-file", help="funder's password file (else env, else prompt)")
    prov.add_argument("--readings-per-day", type=int, required=True, help="per device")
    prov.add_argument("--days", type=int, required=True, help="how long the funding must last")
    prov.add_argument("--cap-eth", required=True, help="hard cap on everything spent, in ETH")
    prov.add_argument("--gas-per-reading", type=int, default=GAS_PER_READING)
    prov.add_argument("--gas-price-gwei", help="default: 2 x base fee + 1 gwei tip, as devices pay")
    prov.add_argument(
        "--transfer-overhead-wei",
        type=int,
        help="a measured extra per transfer (the L1 data fee is asked of the endpoints)",
    )
    prov.add_argument("--devnet", action="store_true", help="light scrypt for the device keys")
    prov.add_argument("--yes", action="store_true", help="send: without it, only the plan")
    prov.add_argument("--json", action="store_true")
    return "lightpost_operator.fleet:cmd_fleet"


def cmd_fleet(args: argparse.Namespace) -> int:
    profile = chain_profile(args.chain)
    endpoints = read_endpoints(args.endpoints_file)
    if args.devices < 1:
        raise ConfigError("--devices must be at least 1")
    overhead = args.transfer_overhead_wei
    if overhead is not None and overhead < 0:
        raise ConfigError("--transfer-overhead-wei must be a non-negative integer")
    quorum = args.quorum or len(endpoints) // 2 + 1
    if not 1 <= quorum <= len(endpoints) or is_minority_quorum(quorum, len(endpoints)):
        raise ConfigError(f"--quorum must be a majority of the {len(endpoints)} endpoint(s)")
    funder = decrypt_key(_read(Path(args.funder_keystore)), ask_password(args.password_file))
    chain = Chain(
        [HttpEndpoint(u, f"rpc#{i}") for i, u in enumerate(endpoints)],
        quorum=quorum,
        block_format=block_format(profile.tx_types, profile.header_extra_fields),
    )
    try:
        result = provision_fleet(
            chain,
            Path(args.dir),
            chain_name=profile.name,
            endpoints=endpoints,
            quorum=args.quorum,
            inbox=parse_inbox(args.inbox),
            mode=args.mode,
            devices=args.devices,
            funder=funder,
            readings_per_day=args.readings_per_day,
            days=args.days,
            cap_wei=parse_amount(args.cap_eth, "--cap-eth"),
            gas_per_reading=args.gas_per_reading,
            gas_price=parse_amount(args.gas_price_gwei, "--gas-price-gwei", GWEI)
            if args.gas_price_gwei
            else None,
            transfer_overhead_wei=overhead or 0,
            devnet=args.devnet,
            send=args.yes,
            log=(lambda _m: None) if args.json else print,
        )
    finally:
        chain.close()
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeystoreError(f"cannot read keystore {path}: {exc.strerror}") from None


def provision_fleet(
    chain: Chain,
    directory: Path,
    *,
    chain_name: str,
    endpoints: list[str],
    funder: PrivateKey,
    devices: int,
    readings_per_day: int,
    days: int,
    cap_wei: int,
    quorum: int | None = None,
    inbox: bytes | None = None,
    mode: str = "channel",
    gas_per_reading: int = GAS_PER_READING,
    gas_price: int | None = None,
    transfer_overhead_wei: int = 0,
    devnet: bool = False,
    send: bool = False,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Steps 1-3 of the module docstring; returns the plan (and the sent transfers)."""
    profile = chain_profile(chain_name)
    served = chain.chain_id()
    if served != profile.chain_id:
        raise ConfigError(
            f"the endpoints serve chain id {served}, not {chain_name!r} ({profile.chain_id})"
        )
    directory.mkdir(parents=True, exist_ok=True)
    addresses: dict[str, bytes] = {}
    for i in range(1, devices + 1):
        name = f"device-{i}"
        addresses[name] = _device_identity(directory, name, devnet=devnet)
        config_path = directory / f"{name}.toml"
        if not config_path.exists():
            text = render_config(
                chain=chain_name,
                endpoints=endpoints,
                keystore=f"{name}.keystore.json",
                password_file=f"{name}.password",
                data_dir=f"{name}-data",
                name=name,
                mode=mode,
                inbox=inbox,
                quorum=quorum,
            )
            write_config(config_path, text)
    quote = Eip1559FeePolicy().quote(b"", 0, chain.base_fee())
    if not isinstance(quote, FeeQuote):
        raise ChainProcessError(f"cannot price the funding transfers now: {quote.reason}")
    price = quote.max_fee_per_gas if gas_price is None else gas_price
    device = next(iter(addresses.values()))
    to, data = sample_post(mode=mode, inbox=inbox, own=device)
    l1_reading = l1_fee_wei(
        chain,
        profile.family,
        chain_id=served,
        to=to,
        data=data,
        value=0,
        quote=quote,
        gas_price=price,
    )
    target = device_budget_wei(
        readings_per_day=readings_per_day,
        days=days,
        gas_per_reading=gas_per_reading,
        gas_price=price,
        l1_fee_per_reading=l1_reading,
    )
    l1_transfer = 0
    if profile.gas_limit_source == "estimate":  # the gas limit buys the L1 data (Arbitrum)
        gas = estimated_transfer_gas(
            chain,
            sender=funder.address,
            to=device,
            local=quote.gas_limit,
            ceiling=profile.max_gas_limit,
        )
        quote = replace(quote, gas_limit=gas)
    else:  # OP-stack: charged in wei beside gas (0 on an L1)
        l1_transfer = l1_fee_wei(
            chain,
            profile.family,
            chain_id=served,
            to=device,
            data=b"",
            value=target,
            quote=quote,
            gas_price=price,
        )
    balances = {name: chain.balance(address) for name, address in addresses.items()}
    plan = plan_funding(
        balances,
        target_wei=target,
        transfer_cost_wei=quote.gas_limit * quote.max_fee_per_gas
        + l1_transfer
        + transfer_overhead_wei,
        cap_wei=cap_wei,
    )
    report: dict[str, Any] = {
        "chain": chain_name,
        "chain_id": profile.chain_id,
        "gas_per_reading": gas_per_reading,
        "gas_price_wei": price,
        "l1_fee_per_reading_wei": l1_reading,
        "l1_fee_per_transfer_wei": l1_transfer,
        "transfer_gas_limit": quote.gas_limit,
        "target_wei": plan.target_wei,
        "devices": [
            {
                "name": n,
                "address": to_checksum_address(a),
                "balance_wei": balances[n],
                "topup_wei": dict(plan.topups).get(n, 0),
            }
            for n, a in addresses.items()
        ],
        "transfer_cost_wei": plan.transfer_cost_wei,
        "total_wei": plan.total_wei,
        "cap_wei": cap_wei,
        "sent": [],
    }
    log(
        f"fleet plan: chain {chain_name} (id {profile.chain_id}), {devices} device(s), "
        f"{readings_per_day} readings/day for {days} days at {gas_per_reading:,} gas per reading "
        f"(+{FIRST_POST_EXTRA_GAS:,} once) at {format_ether(price, GWEI)} gwei per gas"
    )
    if profile.family != "ethereum":
        log(
            f"  L1 data ({profile.family}, agreed by the endpoints): "
            f"{format_ether(l1_reading)} ETH per reading, {format_ether(l1_transfer)} ETH per "
            f"transfer beside gas, {quote.gas_limit:,} gas per transfer"
        )
    log(f"  target per device: {format_ether(target)} ETH")
    for d in report["devices"]:
        what = f"send {format_ether(d['topup_wei'])} ETH" if d["topup_wei"] else "funded"
        log(f"  {d['name']:<12} {d['address']}  has {format_ether(d['balance_wei'])} ETH -> {what}")
    log(
        f"  cost: {format_ether(plan.value_wei)} ETH + fees at most {format_ether(plan.fees_wei)} "
        f"ETH = {format_ether(plan.total_wei)} ETH (cap {format_ether(cap_wei)} ETH)"
    )
    if not plan.topups:
        log("every device is funded: nothing to send")
        return report
    if not send:
        log("plan only: nothing sent; re-run with --yes to send it")
        return report
    report["sent"] = _fund(chain, profile.chain_id, funder, plan, addresses, quote, log)
    return report


def _fund(
    chain: Chain,
    chain_id: int,
    funder: PrivateKey,
    plan: FundingPlan,
    addresses: Mapping[str, bytes],
    quote: FeeQuote,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    nonce = chain.nonce(funder.address, "latest")
    if chain.nonce(funder.address, "pending") != nonce:
        raise ChainProcessError(
            "the funder has transactions in flight: wait until they are mined, then re-run"
        )
    have = chain.balance(funder.address)
    if have < plan.total_wei:
        raise ChainProcessError(
            f"the funder {funder.checksum_address} holds {format_ether(have)} ETH, less than "
            f"the plan's {format_ether(plan.total_wei)} ETH"
        )
    sent: list[dict[str, Any]] = []
    for name, value in plan.topups:
        signed = sign_operator_tx(
            chain, chain_id, funder, nonce=nonce, to=addresses[name], value=value, quote=quote
        )
        result = chain.broadcast(signed.raw, signed.hash)
        if not result.ok:
            first = next(iter(result.errors.values()))
            raise first if isinstance(first, NodeError) else ChainProcessError(str(first))
        sent.append({"name": name, "value_wei": value, "tx": "0x" + signed.hash.hex()})
        nonce += 1
    for entry in sent:
        receipt = chain.wait_receipt(bytes.fromhex(entry["tx"][2:]), timeout=RECEIPT_TIMEOUT_S)
        if parse_quantity(receipt.get("status", "0x1"), "status") != 1:
            raise ChainProcessError(f"funding transfer {entry['tx']} failed")
        log(f"  funded {entry['name']}: {format_ether(entry['value_wei'])} ETH in {entry['tx']}")
    return sent
