"""Short version of `make reliability`'s fuzzing (scenario 7): every decoder, a few
thousand generated inputs each, no crash (an exception other than lightpost's own)."""

from __future__ import annotations

import random
from typing import Any

import pytest
import reliability_fuzz as fuzz

from lightpost.errors import DecodingError

SHORT = 1500
"""Inputs per decoder in the short version (the full run: 1,000,000)."""


@pytest.mark.parametrize("name", list(fuzz.TARGETS))
def test_every_decoder_refuses_bad_input_with_a_lightpost_error(name: str) -> None:
    target = fuzz.TARGETS[name]
    for seed in target.seeds():  # mutations start from encodings the decoder accepts
        target.run(seed)
    result = fuzz.run_chunk(name, seed=7, chunk=0, count=SHORT)
    assert result.inputs == SHORT
    assert result.crashes == 0, result.samples
    assert result.refused > 0  # the generator does produce bad input


def _picky(value: Any) -> object:
    if isinstance(value, bytes) and value[:1] == b"\x00":
        raise IndexError("a bug")  # not a lightpost error: a crash
    if isinstance(value, bytes) and value[:1] == b"\x01":
        raise DecodingError("thing", "refused")
    return None


def test_a_foreign_exception_is_counted_as_a_crash_and_can_be_reproduced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = fuzz.Target("picky", "test", "bytes", lambda: [b"\x00\x00", b"\x01abc"], _picky)
    monkeypatch.setitem(fuzz.TARGETS, "picky", target)
    result = fuzz.run_chunk("picky", seed=1, chunk=3, count=400)
    assert result.crashes > 0 and result.refused > 0 and result.accepted > 0
    assert result.crashes + result.refused + result.accepted == 400
    sample = result.samples[0]
    assert sample["error"] == "IndexError: a bug"
    again = fuzz.regenerate("picky", sample["seed"], sample["chunk"], sample["index"])
    assert again.hex() == sample["input"]
    with pytest.raises(IndexError):
        target.run(again)


def test_the_pool_splits_and_sums_the_work() -> None:
    [total] = fuzz.fuzz(["account"], fuzz.CHUNK + 300, workers=2)
    assert total.inputs == fuzz.CHUNK + 300
    assert total.accepted + total.refused + total.crashes == total.inputs
    assert total.crashes == 0


def test_mutations_change_the_input_and_stay_deterministic() -> None:
    seeds = [b"\xc4\x83abc" * 4]
    a = [fuzz.mutate_bytes(seeds[0], random.Random(5), seeds) for _ in range(20)]
    b = [fuzz.mutate_bytes(seeds[0], random.Random(5), seeds) for _ in range(20)]
    assert a == b and any(x != seeds[0] for x in a)
    doc = {"a": ["0x01", {"b": "0xff"}], "c": 3}
    mutated = [fuzz.mutate_json(doc, random.Random(i)) for i in range(20)]
    assert doc == {"a": ["0x01", {"b": "0xff"}], "c": 3}  # the seed is not changed
    assert any(m != doc for m in mutated)
