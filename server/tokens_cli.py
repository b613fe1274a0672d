"""``sluice tokens add NAME --scopes inference,admin --file FILE``: create a bearer token."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from server.security.tokens import SCOPES, add_token


def add_tokens_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("tokens", help="manage the bearer tokens file")
    commands = p.add_subparsers(dest="tokens_command", required=True)
    add = commands.add_parser(
        "add",
        help="create a token: its hash goes in the file, its secret is printed once",
        description="Create token NAME with SCOPES in FILE (created if missing). Only the "
        "secret's sha256 is stored; the secret is printed once, on stdout. A running server "
        "reads the file again on SIGHUP.",
    )
    add.add_argument("name", help="the token's name: the actor the audit trail records")
    add.add_argument("--scopes", required=True, help=f"comma-separated, of: {', '.join(SCOPES)}")
    add.add_argument(
        "--file",
        type=Path,
        default=None,
        help="the tokens file (default $SLUICE_TOKENS_FILE)",
    )
    add.set_defaults(run=_run_add)


def _run_add(args: argparse.Namespace) -> int:
    path = args.file or os.environ.get("SLUICE_TOKENS_FILE")
    if not path:
        print("sluice: tokens add needs --file or $SLUICE_TOKENS_FILE", file=sys.stderr)
        return 2
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    secret = add_token(Path(path), args.name, scopes)
    print(secret)
    print(f"token '{args.name}' added to {path}; the secret above is not stored", file=sys.stderr)
    return 0
