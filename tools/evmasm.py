"""A tiny EVM assembler for lightpost's hand-written contracts (operator tool, not core).

Source language (``*.easm``), one statement per line; ``;`` starts a comment:

    .const NAME 0x1234            ; a named constant (decimal or 0x-hex)
    .const TOPIC keccak("Sig()")  ; keccak256 of a UTF-8 string, as a 32-byte constant
    label:                        ; defines a label (emits nothing; write JUMPDEST yourself)
    JUMPDEST                      ; any opcode from OPCODES, by mnemonic
    PUSH 65                       ; PUSH with automatic size (PUSH0 for zero)
    PUSH NAME                     ; PUSH of a named constant
    PUSH @label                   ; PUSH of a label's byte offset (sized to fit)
    PUSH2 0x0100                  ; explicit size (the value must fit)

Labels are resolved by fixed-point iteration: every label push starts at one byte and
grows until all offsets fit. A label pushed right before JUMP/JUMPI must mark a
JUMPDEST (checked), so a typo cannot produce an invalid jump.

:func:`deploy_wrapper` builds the initcode that copies a runtime into memory with
CODECOPY and RETURNs it (EIP-3541: the runtime must not start with 0xEF).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT / "src") not in sys.path:
    sys.path.insert(0, str(_ROOT / "src"))

from lightpost.core.hashing import keccak256  # noqa: E402

__all__ = [
    "DEPLOY_WRAPPER_SOURCE",
    "OPCODES",
    "AsmError",
    "assemble",
    "constants",
    "deploy_wrapper",
    "disassemble",
]

OPCODES: dict[str, int] = {
    "STOP": 0x00,
    "ADD": 0x01,
    "MUL": 0x02,
    "SUB": 0x03,
    "LT": 0x10,
    "GT": 0x11,
    "EQ": 0x14,
    "ISZERO": 0x15,
    "AND": 0x16,
    "OR": 0x17,
    "SHL": 0x1B,
    "SHR": 0x1C,
    "SHA3": 0x20,
    "CALLER": 0x33,
    "CALLVALUE": 0x34,
    "CALLDATALOAD": 0x35,
    "CALLDATASIZE": 0x36,
    "CALLDATACOPY": 0x37,
    "CODECOPY": 0x39,
    "POP": 0x50,
    "MLOAD": 0x51,
    "MSTORE": 0x52,
    "SLOAD": 0x54,
    "SSTORE": 0x55,
    "JUMP": 0x56,
    "JUMPI": 0x57,
    "JUMPDEST": 0x5B,
    "PUSH0": 0x5F,
    **{f"PUSH{n}": 0x5F + n for n in range(1, 33)},
    **{f"DUP{n}": 0x7F + n for n in range(1, 17)},
    **{f"SWAP{n}": 0x8F + n for n in range(1, 17)},
    **{f"LOG{n}": 0xA0 + n for n in range(5)},
    "RETURN": 0xF3,
    "REVERT": 0xFD,
    "INVALID": 0xFE,
}
"""Mnemonic -> opcode byte for the subset lightpost's contracts use (Shanghai+: PUSH0)."""

_NAMES = {v: k for k, v in OPCODES.items()}
_PUSH1 = OPCODES["PUSH1"]
_JUMPS = {"JUMP", "JUMPI"}
_LABEL_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):$")
_KECCAK_RE = re.compile(r'^keccak\("([^"]*)"\)$')


class AsmError(Exception):
    """A syntax or resolution error in an assembly source, with its line number."""

    def __init__(self, line: int, reason: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(f"line {line}: {reason}")


@dataclass
class _Item:
    line: int
    op: str  # mnemonic, or "PUSH" for auto-sized pushes
    value: int | None = None  # immediate value of a constant push
    label: str | None = None  # label whose offset is pushed
    size: int = 0  # immediate size in bytes (resolved)
    fixed: bool = False  # explicit PUSHn: size must not change


def _parse_int(text: str, consts: dict[str, int], line: int) -> int:
    if text in consts:
        return consts[text]
    try:
        return int(text, 0)
    except ValueError:
        raise AsmError(line, f"not a number or constant: {text!r}") from None


def _byte_len(value: int) -> int:
    return (value.bit_length() + 7) // 8


def _parse(source: str, consts: dict[str, int]) -> tuple[list[_Item | str], dict[str, int]]:
    """Statements (items, or label names as str) and the constants table."""
    consts = dict(consts)
    stmts: list[_Item | str] = []
    seen_labels: set[str] = set()
    for lineno, raw in enumerate(source.splitlines(), start=1):
        text = raw.split(";", 1)[0].strip()
        if not text:
            continue
        if text.startswith(".const"):
            parts = text.split(None, 2)
            if len(parts) != 3:
                raise AsmError(lineno, ".const needs a name and a value")
            _, name, expr = parts
            match = _KECCAK_RE.match(expr)
            value = (
                int.from_bytes(keccak256(match.group(1).encode()), "big")
                if match
                else _parse_int(expr, consts, lineno)
            )
            if name in consts:
                raise AsmError(lineno, f"constant {name} defined twice")
            consts[name] = value
            continue
        label = _LABEL_RE.match(text)
        if label:
            if label.group(1) in seen_labels:
                raise AsmError(lineno, f"label {label.group(1)} defined twice")
            seen_labels.add(label.group(1))
            stmts.append(label.group(1))
            continue
        parts = text.split()
        op = parts[0].upper()
        if op == "PUSH" or (op.startswith("PUSH") and op != "PUSH0"):
            if len(parts) != 2:
                raise AsmError(lineno, f"{op} needs exactly one operand")
            if op != "PUSH" and op not in OPCODES:
                raise AsmError(lineno, f"unknown opcode {op}")
            arg = parts[1]
            fixed = op != "PUSH"
            size = int(op[4:]) if fixed else 0
            if arg.startswith("@"):
                stmts.append(_Item(lineno, op, label=arg[1:], size=max(size, 1), fixed=fixed))
                continue
            value = _parse_int(arg, consts, lineno)
            if not 0 <= value < 2**256:
                raise AsmError(lineno, f"push value out of range: {arg}")
            need = _byte_len(value)
            if fixed and need > size:
                raise AsmError(lineno, f"{arg} does not fit in {op}")
            stmts.append(_Item(lineno, op, value=value, size=size if fixed else need, fixed=fixed))
            continue
        if len(parts) != 1:
            raise AsmError(lineno, f"{op} takes no operand")
        if op not in OPCODES:
            raise AsmError(lineno, f"unknown opcode {op}")
        stmts.append(_Item(lineno, op))
    return stmts, consts


def _layout(stmts: list[_Item | str]) -> dict[str, int]:
    """Label offsets for the current push sizes."""
    offsets: dict[str, int] = {}
    pc = 0
    for stmt in stmts:
        if isinstance(stmt, str):
            offsets[stmt] = pc
        else:
            pc += 1 + stmt.size
    return offsets


def assemble(source: str, consts: dict[str, int] | None = None) -> bytes:
    """Assemble ``source`` to bytecode; ``consts`` pre-defines named constants."""
    stmts, _ = _parse(source, consts or {})
    items = [s for s in stmts if isinstance(s, _Item)]
    while True:  # fixed point: label pushes only ever grow, so this terminates
        offsets = _layout(stmts)
        grew = False
        for item in items:
            if item.label is None:
                continue
            if item.label not in offsets:
                raise AsmError(item.line, f"undefined label @{item.label}")
            need = max(1, _byte_len(offsets[item.label]))
            if need > item.size:
                if item.fixed:
                    raise AsmError(item.line, f"@{item.label} does not fit in {item.op}")
                item.size = need
                grew = True
        if not grew:
            break
    out = bytearray()
    jumpdests: set[int] = set()
    checks: list[tuple[int, int, str]] = []  # (line, target, label) of jump targets
    for index, stmt in enumerate(stmts):
        if isinstance(stmt, str):
            continue
        if stmt.op == "JUMPDEST":
            jumpdests.add(len(out))
        if stmt.label is not None or stmt.value is not None:
            value = offsets[stmt.label] if stmt.label is not None else stmt.value
            assert value is not None
            if stmt.size == 0:
                out.append(OPCODES["PUSH0"])
            else:
                out.append(_PUSH1 - 1 + stmt.size)
                out += value.to_bytes(stmt.size, "big")
            nxt = next((s for s in stmts[index + 1 :] if isinstance(s, _Item)), None)
            if stmt.label is not None and nxt is not None and nxt.op in _JUMPS:
                checks.append((stmt.line, value, stmt.label))
        else:
            out.append(OPCODES[stmt.op])
    for line, target, label in checks:
        if target not in jumpdests:
            raise AsmError(line, f"jump target @{label} is not a JUMPDEST")
    return bytes(out)


def constants(source: str) -> dict[str, int]:
    """The named constants a source defines with ``.const`` (e.g. an event topic)."""
    return _parse(source, {})[1]


def disassemble(code: bytes) -> list[str]:
    """One line per instruction, ``offset: MNEMONIC [0xIMMEDIATE]`` (for reviews and docs)."""
    lines: list[str] = []
    pc = 0
    while pc < len(code):
        op = code[pc]
        name = _NAMES.get(op, f"UNKNOWN_0x{op:02x}")
        if _PUSH1 <= op <= _PUSH1 + 31:
            size = op - _PUSH1 + 1
            imm = code[pc + 1 : pc + 1 + size]
            lines.append(f"{pc:04x}: {name} 0x{imm.hex()}")
            pc += 1 + size
        else:
            lines.append(f"{pc:04x}: {name}")
            pc += 1
    return lines


DEPLOY_WRAPPER_SOURCE = """\
; initcode: copy the runtime (appended right after this code) to memory and return it
    PUSH RUNTIME_SIZE   ; [size]
    DUP1                ; [size, size]
    PUSH @runtime       ; [offset, size, size]
    PUSH0               ; [0, offset, size, size]
    CODECOPY            ; mem[0:size] = code[offset:offset+size]   [size]
    PUSH0               ; [0, size]
    RETURN              ; return mem[0:size] as the deployed code
runtime:
"""
"""The deploy wrapper: CODECOPY the runtime that follows it, then RETURN it."""


def deploy_wrapper(runtime: bytes) -> bytes:
    """Initcode that deploys ``runtime`` unchanged."""
    if not runtime:
        raise AsmError(0, "empty runtime")
    if runtime[0] == 0xEF:
        raise AsmError(0, "runtime starts with 0xEF (rejected by EIP-3541)")
    return assemble(DEPLOY_WRAPPER_SOURCE, {"RUNTIME_SIZE": len(runtime)}) + runtime
