"""`lightpost key new | import | address`: keystore v3 files for a device or an operator.

The password comes from ``--password-file``, else LIGHTPOST_PASSWORD (removed from the environment
once read), else a no-echo prompt; never from argv, never printed. A key to import is read from a
file or stdin, never argv (``ps`` shows argv to every user). Key files are created 0600 and never
overwritten. Standard scrypt (n=2^18, r=8, p=1) unless ``--devnet`` asks for geth's light one.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import warnings
from pathlib import Path

from lightpost.core.keys import PrivateKey, parse_address, to_checksum_address
from lightpost.core.keystore import MAX_KEYSTORE_TEXT, decrypt_key
from lightpost.errors import DecodingError, KeystoreError
from lightpost.node.config import PASSWORD_ENV, env_password, read_password_file
from lightpost_operator.keywrite import (
    LIGHT_SCRYPT_N,
    LIGHT_SCRYPT_P,
    SCRYPT_N,
    SCRYPT_P,
    encrypt_key,
    generate_key,
)

__all__ = ["add_key_parser", "ask_password", "cmd_key", "write_new_private"]

MAX_KEY_TEXT = 256
"""Longest private-key text read for import: 64 hex digits, 0x and white space fit easily."""


def add_key(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> str:
    """The ``lightpost key`` entry point: its parser, and the handler that runs it."""
    add_key_parser(sub)
    return "lightpost_operator.key_cmd:cmd_key"


def add_key_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    key = sub.add_parser("key", help="create, import or show a keystore (v3) key")
    ksub = key.add_subparsers(dest="key_cmd", required=True, metavar="{new,import,address}")
    new = ksub.add_parser("new", help="create a key; prints its address")
    imp = ksub.add_parser("import", help="encrypt a hex private key read from a file or stdin")
    imp.add_argument("--key-file", default="-", help="file holding the hex key (default: stdin)")
    for p in (new, imp):
        p.add_argument("--out", required=True, help="keystore file to create (never overwritten)")
        p.add_argument(
            "--devnet",
            action="store_true",
            help="light scrypt (n=4096, p=6): fast, weak; for a local devnet only",
        )
    addr = ksub.add_parser("address", help="print a keystore's address")
    addr.add_argument("keystore")
    addr.add_argument(
        "--verify", action="store_true", help="decrypt it (needs the password) and check"
    )
    for p in (new, imp, addr):
        p.add_argument(
            "--password-file", help=f"password file (else {PASSWORD_ENV}, else a prompt)"
        )


def cmd_key(args: argparse.Namespace) -> int:
    if args.key_cmd == "address":
        print(to_checksum_address(_address(args)))
        return 0
    if args.key_cmd == "import":
        text = _read(args.key_file, MAX_KEY_TEXT)
        if len(text) > MAX_KEY_TEXT:
            raise KeystoreError("the private key text is too long: expected 64 hex digits")
        key = PrivateKey.from_hex(text)  # its errors never echo the text
    else:
        key = generate_key(os.urandom)
    password = ask_password(args.password_file, confirm=True)
    n, p = (LIGHT_SCRYPT_N, LIGHT_SCRYPT_P) if args.devnet else (SCRYPT_N, SCRYPT_P)
    doc = encrypt_key(key, password, randbytes=os.urandom, scrypt_n=n, scrypt_p=p)
    write_new_private(Path(args.out), json.dumps(doc, indent=2) + "\n")
    print(f"lightpost: wrote {args.out} (scrypt n={n}, p={p})", file=sys.stderr)
    print(key.checksum_address)
    return 0


def write_new_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 and write ``text``; an existing file is never replaced."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeystoreError(f"{path} already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise KeystoreError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _read(source: str, limit: int) -> str:
    """At most ``limit + 1`` characters of a file (``-``: stdin), so an overlong one shows."""
    try:
        if source == "-" and sys.stdin.isatty():  # a terminal: read without echo
            return getpass.getpass("Private key (hex): ")[: limit + 1]
        if source == "-":
            return sys.stdin.read(limit + 1)
        with open(source, encoding="utf-8") as fh:
            return fh.read(limit + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise KeystoreError(
            f"cannot read {source}: {getattr(exc, 'strerror', None) or exc}"
        ) from None


def ask_password(password_file: str | None, *, confirm: bool = False) -> str:
    """The file's password, else LIGHTPOST_PASSWORD (then removed), else a no-echo prompt."""
    password = read_password_file(Path(password_file)) if password_file else env_password()
    if password is None:
        with warnings.catch_warnings():  # no terminal: getpass would read (and echo) stdin
            warnings.simplefilter("error", getpass.GetPassWarning)
            try:
                password = getpass.getpass("Keystore password: ")
                if confirm and getpass.getpass("Repeat the password: ") != password:
                    raise KeystoreError("the two passwords differ")
            except (getpass.GetPassWarning, EOFError):
                raise KeystoreError(
                    f"no password: pass --password-file or set {PASSWORD_ENV} (no terminal)"
                ) from None
    if not password:
        raise KeystoreError("the password is empty")
    return password


def _address(args: argparse.Namespace) -> bytes:
    text = _read(args.keystore, MAX_KEYSTORE_TEXT)
    if args.verify:
        return decrypt_key(text, ask_password(args.password_file)).address
    try:
        return parse_address("0x" + str(json.loads(text)["address"]).removeprefix("0x"))
    except (ValueError, KeyError, TypeError, DecodingError):
        raise KeystoreError(
            f"keystore {args.keystore} records no valid address; use --verify to decrypt it"
        ) from None
