"""Readers for the consensus-spec-tests files under ../shared/vectors/beacon (test-only): raw
snappy blocks, SSZ decoded by schema into the beacon-API JSON form (so the core's one JSON decoder
reads the official vectors too), and a ChainConfig from a case's config.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lightpost_beacon.containers import FORK_NAMES, ChainConfig

MINIMAL = {"SLOTS_PER_EPOCH": 8, "EPOCHS_PER_SYNC_COMMITTEE_PERIOD": 8, "SYNC_COMMITTEE_SIZE": 32}
"""consensus-specs presets/minimal (phase0, altair)."""


def snappy_decompress(data: bytes) -> bytes:
    """A raw snappy block (format_description.txt of google/snappy)."""
    pos, length, shift = 0, 0, 0
    while True:
        b = data[pos]
        pos += 1
        length |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            break
    out = bytearray()
    while pos < len(data):
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:
            n = tag >> 2
            if n >= 60:
                extra = n - 59
                n = int.from_bytes(data[pos : pos + extra], "little")
                pos += extra
            n += 1
            out += data[pos : pos + n]
            pos += n
            continue
        if kind == 1:
            n = 4 + ((tag >> 2) & 7)
            offset = ((tag >> 5) << 8) | data[pos]
            pos += 1
        else:
            width = 2 if kind == 2 else 4
            n = (tag >> 2) + 1
            offset = int.from_bytes(data[pos : pos + width], "little")
            pos += width
        for _ in range(n):  # overlapping copies are byte by byte
            out.append(out[-offset])
    assert len(out) == length
    return bytes(out)


# --- SSZ schemas: ("uint",), ("bytes", n), ("bytelist", limit), ("bits", n),
# ("vector", elem, n), ("container", ((name, type), ...)) ---

U64 = ("uint",)
B32 = ("bytes", 32)


def _exec(fork: str) -> tuple[Any, ...]:
    fields: list[tuple[str, Any]] = [
        ("parent_hash", B32),
        ("fee_recipient", ("bytes", 20)),
        ("state_root", B32),
        ("receipts_root", B32),
        ("logs_bloom", ("bytes", 256)),
        ("prev_randao", B32),
        ("block_number", U64),
        ("gas_limit", U64),
        ("gas_used", U64),
        ("timestamp", U64),
        ("extra_data", ("bytelist", 32)),
        ("base_fee_per_gas", ("uint", 32)),
        ("block_hash", B32),
        ("transactions_root", B32),
        ("withdrawals_root", B32),
    ]
    if FORK_NAMES.index(fork) >= FORK_NAMES.index("deneb"):
        fields += [("blob_gas_used", U64), ("excess_blob_gas", U64)]
    return ("container", tuple(fields))


def schemas(fork: str, size: int) -> dict[str, tuple[Any, ...]]:
    """The light-client containers of ``fork`` for a committee of ``size``."""
    electra = FORK_NAMES.index(fork) >= FORK_NAMES.index("electra")
    beacon = (
        "container",
        (
            ("slot", U64),
            ("proposer_index", U64),
            ("parent_root", B32),
            ("state_root", B32),
            ("body_root", B32),
        ),
    )
    header = (
        "container",
        (("beacon", beacon), ("execution", _exec(fork)), ("execution_branch", ("vector", B32, 4))),
    )
    committee = (
        "container",
        (("pubkeys", ("vector", ("bytes", 48), size)), ("aggregate_pubkey", ("bytes", 48))),
    )
    aggregate = (
        "container",
        (("sync_committee_bits", ("bits", size)), ("sync_committee_signature", ("bytes", 96))),
    )
    cbranch = ("vector", B32, 6 if electra else 5)
    fbranch = ("vector", B32, 7 if electra else 6)
    tail = (("sync_aggregate", aggregate), ("signature_slot", U64))
    return {
        "BeaconBlockHeader": beacon,
        "ExecutionPayloadHeader": _exec(fork),
        "LightClientHeader": header,
        "SyncCommittee": committee,
        "SyncAggregate": aggregate,
        "LightClientBootstrap": (
            "container",
            (
                ("header", header),
                ("current_sync_committee", committee),
                ("current_sync_committee_branch", cbranch),
            ),
        ),
        "LightClientUpdate": (
            "container",
            (
                ("attested_header", header),
                ("next_sync_committee", committee),
                ("next_sync_committee_branch", cbranch),
                ("finalized_header", header),
                ("finality_branch", fbranch),
                *tail,
            ),
        ),
        "LightClientFinalityUpdate": (
            "container",
            (
                ("attested_header", header),
                ("finalized_header", header),
                ("finality_branch", fbranch),
                *tail,
            ),
        ),
        "LightClientOptimisticUpdate": ("container", (("attested_header", header), *tail)),
        "ForkData": (
            "container",
            (("current_version", ("bytes", 4)), ("genesis_validators_root", B32)),
        ),
        "SigningData": ("container", (("object_root", B32), ("domain", B32))),
        "SignedBeaconBlockHeader": (
            "container",
            (("message", beacon), ("signature", ("bytes", 96))),
        ),
    }


def _fixed_size(t: tuple[Any, ...]) -> int | None:
    kind = t[0]
    if kind == "uint":
        return t[1] if len(t) > 1 else 8
    if kind == "bytes":
        return int(t[1])
    if kind == "bits":
        return (int(t[1]) + 7) // 8
    if kind == "vector":
        inner = _fixed_size(t[1])
        return None if inner is None else inner * int(t[2])
    if kind == "container":
        sizes = [_fixed_size(f) for _, f in t[1]]
        return None if None in sizes else sum(s for s in sizes if s is not None)
    return None  # bytelist


def ssz_decode(t: tuple[Any, ...], data: bytes) -> Any:
    """SSZ bytes of type ``t`` as beacon-API JSON values (decimal strings, 0x-hex)."""
    kind = t[0]
    if kind == "uint":
        assert len(data) == _fixed_size(t)
        return str(int.from_bytes(data, "little"))
    if kind in ("bytes", "bits", "bytelist"):
        assert kind == "bytelist" or len(data) == _fixed_size(t)
        return "0x" + data.hex()
    if kind == "vector":
        size = _fixed_size(t[1])
        assert size is not None and len(data) == size * t[2]
        return [ssz_decode(t[1], data[i * size : (i + 1) * size]) for i in range(t[2])]
    out: dict[str, Any] = {}
    pos = 0
    variable: list[tuple[str, Any, int]] = []
    for name, ft in t[1]:
        size = _fixed_size(ft)
        if size is None:
            variable.append((name, ft, int.from_bytes(data[pos : pos + 4], "little")))
            pos += 4
        else:
            out[name] = ssz_decode(ft, data[pos : pos + size])
            pos += size
    ends = [o for _, _, o in variable[1:]] + [len(data)] if variable else []
    for (name, ft, start), end in zip(variable, ends, strict=True):
        out[name] = ssz_decode(ft, data[start:end])
    return out


def read_ssz(path: Path, t: tuple[Any, ...]) -> Any:
    return ssz_decode(t, snappy_decompress(path.read_bytes()))


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def config_from_yaml(path: Path, genesis_validators_root: bytes) -> ChainConfig:
    """A minimal-preset ChainConfig from a case's config.yaml (forks absent there: unscheduled)."""
    raw = path.read_text()
    values: dict[str, str] = {}
    for line in raw.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip().strip("'")
    forks = [("phase0", 0, bytes.fromhex(values["GENESIS_FORK_VERSION"][2:]))]
    for name in FORK_NAMES[1:]:
        epoch = values.get(f"{name.upper()}_FORK_EPOCH")
        if epoch is not None:
            version = bytes.fromhex(values[f"{name.upper()}_FORK_VERSION"][2:])
            forks.append((name, int(epoch), version))
    return ChainConfig(
        genesis_validators_root=genesis_validators_root,
        slots_per_epoch=MINIMAL["SLOTS_PER_EPOCH"],
        epochs_per_period=MINIMAL["EPOCHS_PER_SYNC_COMMITTEE_PERIOD"],
        committee_size=MINIMAL["SYNC_COMMITTEE_SIZE"],
        forks=tuple(forks),
        seconds_per_slot=6,
    )
