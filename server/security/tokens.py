"""Bearer tokens: a TOML file of named tokens, each its secret's sha256 and its scopes.

```toml
[ci-bot]
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
scopes = ["inference"]
```

Only hashes are stored; a presented token is hashed and compared with every stored hash in
constant time, so neither timing nor the file reveals a secret. Secrets are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from server.errors import ConfigError

log = logging.getLogger(__name__)

Scope = Literal["inference", "admin"]
SCOPES: tuple[str, ...] = get_args(Scope)
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Token:
    name: str
    digest: bytes  # sha256 of the secret
    scopes: frozenset[str]


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True, slots=True)
class TokenSet:
    """The tokens of one reading of the file."""

    tokens: tuple[Token, ...] = ()

    @classmethod
    def parse(cls, doc: Mapping[str, Any], where: str) -> TokenSet:
        tokens = []
        for name, table in doc.items():
            if not _NAME.fullmatch(name):
                raise ConfigError(f"{where}: token name '{name}' must match {_NAME.pattern}")
            if not isinstance(table, Mapping):
                raise ConfigError(f"{where}: [{name}] must be a table")
            unknown = set(table) - {"sha256", "scopes"}
            if unknown:
                raise ConfigError(f"{where}: [{name}] has unknown key(s) {sorted(unknown)}")
            hexdigest = table.get("sha256")
            if not isinstance(hexdigest, str) or not _HEX.fullmatch(hexdigest):
                raise ConfigError(f"{where}: [{name}] sha256 must be 64 lowercase hex digits")
            scopes = table.get("scopes", [])
            if not isinstance(scopes, list) or not set(scopes) <= set(SCOPES):
                raise ConfigError(f"{where}: [{name}] scopes must be a list of {list(SCOPES)}")
            tokens.append(Token(name, bytes.fromhex(hexdigest), frozenset(scopes)))
        return cls(tuple(tokens))

    @classmethod
    def read(cls, path: Path) -> TokenSet:
        try:
            with path.open("rb") as fh:
                doc = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the tokens file ({exc.strerror})") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML ({exc})") from exc
        return cls.parse(doc, str(path))

    def authenticate(self, secret: str) -> Token | None:
        """The token whose hash matches ``secret``'s; every stored hash is compared, in
        constant time, whether or not one matched earlier."""
        presented = digest(secret)
        found = None
        for token in self.tokens:
            if hmac.compare_digest(presented, token.digest):
                found = token
        return found

    def has_scope(self, scope: str) -> bool:
        return any(scope in token.scopes for token in self.tokens)


class TokenFile:
    """The tokens file, read at start and again on ``reload`` (SIGHUP)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.current = TokenSet.read(path)

    def reload(self) -> None:
        """Read the file again; a broken file keeps the tokens already loaded."""
        try:
            self.current = TokenSet.read(self.path)
        except ConfigError as exc:
            log.error("tokens not reloaded, keeping %d: %s", len(self.current.tokens), exc)
            return
        log.info("reloaded %d token(s) from %s", len(self.current.tokens), self.path)


def add_token(path: Path, name: str, scopes: Iterable[str]) -> str:
    """Create token ``name`` in ``path`` (created if missing) and return its secret, which is
    stored nowhere: only its sha256 is written. The file is replaced atomically."""
    scopes = sorted(set(scopes))
    if not _NAME.fullmatch(name):
        raise ConfigError(f"token name '{name}' must match {_NAME.pattern}")
    if not scopes or not set(scopes) <= set(SCOPES):
        raise ConfigError(f"scopes must be one or more of {', '.join(SCOPES)}")
    existing = TokenSet.read(path) if path.exists() else TokenSet()
    if any(token.name == name for token in existing.tokens):
        raise ConfigError(f"{path}: a token named '{name}' exists")
    secret = "sluice_" + secrets.token_urlsafe(32)
    text = path.read_text() if path.exists() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    quoted = ", ".join(f'"{scope}"' for scope in scopes)
    text += f'\n["{name}"]\nsha256 = "{digest(secret).hex()}"\nscopes = [{quoted}]\n'
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return secret
