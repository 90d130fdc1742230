"""`sabaq footprint …`: verify a ledger, print the public key, export the checkpoints.

These are the registrar's tools (docs/footprint.md): they read files only and
never open the ledger for writing, so they are safe while the server runs.
Exit status: 0 when all is well, 1 when verification found a problem, 2 for
a usage error (a missing or unreadable file, a key that is not Ed25519).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from .canonical import canonical_json
from .checkpoints import (
    _table_checkpoints,
    key_id,
    load_public_key,
    public_key_pem,
    write_checkpoints,
)
from .verify import _open_read_only, verify_ledger

__all__ = ["add_parser", "run"]

_DEFAULT_DB = Path("data/footprint.db")
_DEFAULT_KEY = Path("data/footprint-signing-key.pem")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `footprint` and its commands to the `sabaq` parser."""
    footprint = subparsers.add_parser(
        "footprint",
        help="verify the attendance ledger, print its public key, export its checkpoints",
        description="The digital footprint ledger (docs/footprint.md).",
    )
    commands = footprint.add_subparsers(dest="footprint_command")
    verify = commands.add_parser(
        "verify",
        help="recompute the hash chain and check every checkpoint",
        description="Recompute the ledger's hash chain from event 1 and check every "
        "checkpoint (the database's and those in --checkpoints files) against it and the "
        "public key. Prints 'OK: …' and exits 0, or the first problem and exits 1.",
    )
    verify.add_argument("--db", type=Path, default=_DEFAULT_DB, help="the ledger file")
    verify.add_argument(
        "--public-key",
        type=Path,
        metavar="PEM",
        help="the registrar's copy of the public key (or the signing key file itself); "
        "without it, signatures are not checked",
    )
    verify.add_argument(
        "--checkpoints",
        type=Path,
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="exported checkpoints (JSON lines) kept outside the server",
    )
    public = commands.add_parser(
        "public-key",
        help="print the public key of the signing key (PEM), for the registrar",
    )
    public.add_argument("--key", type=Path, default=_DEFAULT_KEY, help="the signing key file")
    export = commands.add_parser(
        "export-checkpoints",
        help="write every signed checkpoint as JSON lines",
    )
    export.add_argument("--db", type=Path, default=_DEFAULT_DB, help="the ledger file")
    export.add_argument(
        "--output", type=Path, metavar="FILE", help="where to write (default: standard output)"
    )
    footprint.set_defaults(footprint_parser=footprint)


def run(args: argparse.Namespace) -> int:
    """Runs the `footprint` command that ``args`` names; returns the exit status."""
    command = getattr(args, "footprint_command", None)
    try:
        if command == "verify":
            return _verify(args)
        if command == "public-key":
            return _public_key(args)
        if command == "export-checkpoints":
            return _export(args)
    except (OSError, ValueError, sqlite3.Error) as exc:
        # Missing or unreadable files and keys: the invocation is wrong, not the ledger.
        print(f"sabaq footprint {command}: {exc}", file=sys.stderr)
        return 2
    args.footprint_parser.print_help()
    return 2


def _verify(args: argparse.Namespace) -> int:
    pem = None if args.public_key is None else args.public_key.read_bytes()
    result = verify_ledger(args.db, public_key_pem=pem, checkpoint_files=args.checkpoints)
    if not result.ok:
        print(result.problem)
        return 1
    print(f"OK: {result.events} events, {result.checkpoints} checkpoints verified")
    if not result.signatures_checked:
        print(
            "warning: signatures were not checked (give --public-key with the registrar's copy)",
            file=sys.stderr,
        )
    return 0


def _public_key(args: argparse.Namespace) -> int:
    path: Path = args.key
    if not path.is_file():
        # Not created here: a key the server does not use would mislead the registrar.
        raise FileNotFoundError(f"no signing key at {path} (the server creates it at first start)")
    key = load_public_key(path.read_bytes())
    sys.stdout.write(public_key_pem(key).decode("ascii"))
    # stderr: stdout stays a plain PEM file when redirected.
    print(f"key id: {key_id(key)}", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    connection = _open_read_only(args.db)
    try:
        checkpoints = _table_checkpoints(connection)
    finally:
        connection.close()
    if args.output is None:
        for checkpoint in checkpoints:
            sys.stdout.write(canonical_json(checkpoint.to_json()).decode() + "\n")
    else:
        write_checkpoints(args.output, checkpoints)
        print(f"{len(checkpoints)} checkpoints written to {args.output}", file=sys.stderr)
    return 0
