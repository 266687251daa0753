"""The committed inbox bytecode is exactly what the committed assembly source produces."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lightpost.core import inbox
from lightpost.core.inbox import EVENT_SIGNATURE, EVENT_TOPIC
from lightpost_operator.contracts import inbox_artifact, inbox_initcode, inbox_runtime

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def _load(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # build_contracts imports evmasm by name
    spec.loader.exec_module(module)
    return module


evmasm = _load("evmasm")
build = _load("build_contracts")


def test_committed_artifact_is_reproduced_byte_for_byte() -> None:
    source = build.SOURCE.read_text(encoding="utf-8")
    assert build.ARTIFACT.read_text(encoding="utf-8") == build.render(build.build_inbox(source))
    assert inbox_artifact()["source_sha256"] == hashlib.sha256(source.encode()).hexdigest()
    assert build.main(["--check"]) == 0


def test_artifact_agrees_with_the_python_mirror() -> None:
    artifact = inbox_artifact()
    assert artifact["event_topic"] == "0x" + EVENT_TOPIC.hex()
    assert artifact["event_signature"] == EVENT_SIGNATURE
    runtime = inbox_runtime()
    # the topic is pushed whole, so the runtime and the Python constant cannot differ
    assert bytes([evmasm.OPCODES["PUSH32"]]) + EVENT_TOPIC in runtime
    assert inbox_initcode() == evmasm.deploy_wrapper(runtime)
    assert inbox_initcode().endswith(runtime)


# Fixed gas of the simple opcodes (Yellow Paper tiers); the dynamic ones (SLOAD, SSTORE,
# SHA3, LOG4, memory and copy words) are modelled separately in lightpost.core.inbox.
_BASE = {"CALLVALUE", "CALLDATASIZE", "CALLER", "PUSH0"}
_VERYLOW = {"ADD", "LT", "SHR", "MSTORE", "CALLDATALOAD", "CALLDATACOPY"}
_DYNAMIC = {"SLOAD", "SSTORE", "SHA3", "LOG4"}


def test_straight_line_gas_constant_matches_the_source() -> None:
    total = 0
    for line in evmasm.disassemble(inbox_runtime()):
        name = line.split()[1]
        if name == "STOP":
            break  # end of the success path; the revert block is never run on success
        if name in _BASE:
            total += 2
        elif name in _VERYLOW or name.startswith(("PUSH", "DUP", "SWAP")):
            total += 3
        elif name == "JUMPI":
            total += 10
        else:
            assert name in _DYNAMIC, name
    assert total == inbox._STRAIGHT_LINE_GAS


# --- the assembler itself ------------------------------------------------------------


def test_push_sizing_and_labels() -> None:
    code = evmasm.assemble(
        """
        .const BIG 0x1234
        PUSH 0          ; -> PUSH0
        PUSH 255
        PUSH BIG
        PUSH2 1
        PUSH @end
        JUMP
        end:
        JUMPDEST
        """
    )
    assert code.hex() == "5f60ff611234610001600c565b"


def test_labels_grow_to_two_bytes_past_255() -> None:
    source = "PUSH @far\nJUMP\n" + "JUMPDEST\n" * 300 + "far:\nJUMPDEST\n"
    code = evmasm.assemble(source)
    assert code[:4] == bytes([0x61, 0x01, 0x30, 0x56])  # PUSH2 0x0130 = 4 + 300
    assert code[0x130] == 0x5B


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("PUSH @nowhere\nJUMP", "undefined label"),
        ("PUSH @x\nJUMP\nx:\nSTOP", "not a JUMPDEST"),
        ("FROB", "unknown opcode"),
        ("PUSH1 0x100", "does not fit"),
        ("PUSH", "exactly one operand"),
        ("ADD 1", "no operand"),
        ("PUSH nope", "not a number"),
        ("x:\nx:", "defined twice"),
        (".const A 1\n.const A 2", "defined twice"),
        ("PUSH " + str(2**256), "out of range"),
    ],
)
def test_assembler_errors_name_the_line(source: str, reason: str) -> None:
    with pytest.raises(evmasm.AsmError, match=reason):
        evmasm.assemble(source)


def test_deploy_wrapper_refuses_eip3541_runtime() -> None:
    with pytest.raises(evmasm.AsmError, match="EIP-3541"):
        evmasm.deploy_wrapper(b"\xef\x00")
