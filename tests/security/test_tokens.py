"""The tokens file: created by ``sluice tokens add``, only hashes stored, read and reloaded."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from server.cli import main
from server.errors import ConfigError
from server.security.tokens import TokenFile, TokenSet, add_token


def test_add_stores_only_the_hash(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    secret = add_token(path, "alice", ["inference"])
    text = path.read_text()
    assert secret not in text
    assert hashlib.sha256(secret.encode()).hexdigest() in text
    assert path.stat().st_mode & 0o077 == 0  # readable by its owner only
    token = TokenSet.read(path).authenticate(secret)
    assert token is not None and token.name == "alice" and token.scopes == {"inference"}


def test_a_wrong_secret_matches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    secret = add_token(path, "alice", ["inference"])
    add_token(path, "bob", ["admin"])
    tokens = TokenSet.read(path)
    assert tokens.authenticate(secret + "x") is None
    assert tokens.authenticate("") is None
    assert tokens.has_scope("admin") and len(tokens.tokens) == 2


def test_cli_prints_the_secret_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tokens.toml"
    assert main(["tokens", "add", "ci", "--scopes", "inference,admin", "--file", str(path)]) == 0
    secret = capsys.readouterr().out.strip()
    token = TokenSet.read(path).authenticate(secret)
    assert token is not None and token.scopes == {"inference", "admin"}


@pytest.mark.parametrize(
    ("name", "scopes", "message"),
    [
        ("alice", ["inference"], "exists"),
        ("no spaces", ["inference"], "must match"),
        ("carol", ["root"], "scopes must be"),
        ("carol", [], "scopes must be"),
    ],
)
def test_add_refuses_bad_tokens(tmp_path: Path, name: str, scopes: list[str], message: str) -> None:
    path = tmp_path / "tokens.toml"
    add_token(path, "alice", ["inference"])
    with pytest.raises(ConfigError, match=message):
        add_token(path, name, scopes)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[a]\nsha256 = "xyz"\nscopes = ["inference"]\n', "64 lowercase hex"),
        (f'[a]\nsha256 = "{"0" * 64}"\nscopes = ["god"]\n', "scopes must be"),
        (f'[a]\nsha256 = "{"0" * 64}"\nsecret = "x"\n', "unknown key"),
        ("[a\n", "invalid TOML"),
        ("a = 1\n", "must be a table"),
    ],
)
def test_a_bad_file_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        TokenSet.read(path)


def test_reload_keeps_the_old_tokens_when_the_file_breaks(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    first = add_token(path, "alice", ["inference"])
    tokens = TokenFile(path)
    second = add_token(path, "bob", ["inference"])
    tokens.reload()
    assert tokens.current.authenticate(second) is not None
    path.write_text("[broken\n")
    tokens.reload()
    assert tokens.current.authenticate(first) is not None
