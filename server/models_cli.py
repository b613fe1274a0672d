"""``sluice models`` and ``sluice audit``: argparse → the registry's Python API. No logic here.

    sluice models register NAME FILE [--tag k=v]... [--description T] [--reason T] [--author A]
                                    [--config config.toml] [--baseline DATA_OR_BASELINE]
    sluice models list [--name PATTERN] [--tag k=v]... [--any-tag]
    sluice models show NAME [--version V | --alias A]
    sluice models tag NAME --version V k=v...      sluice models untag NAME --version V k...
    sluice models alias NAME ALIAS --version V     sluice models unalias NAME ALIAS
    sluice models archive NAME --version V
    sluice models deploy NAME --version V [--reason T] [--replace]
    sluice models undeploy NAME [--version V]      sluice models delete NAME --version V
    sluice models history NAME [--at TIME]
    sluice models validate ... / sluice models rollout ...   (see server/rollout/cli.py)
    sluice audit verify

Every subcommand takes ``--repository`` (default ``$SLUICE_REPOSITORY``, else ``./models``),
``--registry postgresql://...`` (default ``$SLUICE_REGISTRY``) and ``--json``.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from server.errors import InvalidInput, SluiceError
from server.registry import Registry, VersionInfo, open_registry


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repository", help="model repository (default $SLUICE_REPOSITORY or ./models)")
    p.add_argument("--registry", help="postgresql://... for a shared registry ($SLUICE_REGISTRY)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _change(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reason", default="", help="why, for the audit trail")
    p.add_argument("--author", help="who (default $SLUICE_ACTOR, else the OS user)")


def _pairs(values: Sequence[str], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise InvalidInput(f"{what} '{value}' is not key=value")
        pairs[key] = rest
    return pairs


def add_models_parser(subparsers: Any) -> None:
    models = subparsers.add_parser("models", help="the model registry: versions, deploys, audit")
    sub = models.add_subparsers(dest="action", required=True)

    p = sub.add_parser("register", help="store FILE as the next version of NAME")
    p.add_argument("name")
    p.add_argument("file", type=Path)
    p.add_argument("--tag", action="append", default=[], metavar="K=V")
    p.add_argument("--description", default="")
    p.add_argument("--config", type=Path, help="the version's config.toml")
    p.add_argument("--baseline", type=Path, help="a saved drift baseline, or reference data")
    _change(p)
    _common(p)
    p.set_defaults(run=_register)

    p = sub.add_parser("list", help="versions, filtered by name pattern and tags")
    p.add_argument("--name", help="glob pattern, e.g. 'fraud-*'")
    p.add_argument("--tag", action="append", default=[], metavar="K=V")
    p.add_argument("--any-tag", action="store_true", help="match any --tag (default: all)")
    _common(p)
    p.set_defaults(run=_list)

    p = sub.add_parser("show", help="one version (default: the latest)")
    p.add_argument("name")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", type=int)
    which.add_argument("--alias")
    _common(p)
    p.set_defaults(run=_show)

    p = sub.add_parser("tag", help="set tags on a version")
    p.add_argument("name")
    p.add_argument("--version", type=int, required=True)
    p.add_argument("tags", nargs="+", metavar="K=V")
    _change(p)
    _common(p)
    p.set_defaults(run=_tag)

    p = sub.add_parser("untag", help="remove tags from a version")
    p.add_argument("name")
    p.add_argument("--version", type=int, required=True)
    p.add_argument("keys", nargs="+", metavar="KEY")
    _change(p)
    _common(p)
    p.set_defaults(run=_untag)

    p = sub.add_parser("alias", help="point ALIAS (production, staging, ...) at a version")
    p.add_argument("name")
    p.add_argument("alias")
    p.add_argument("--version", type=int, required=True)
    p.add_argument("--force", action="store_true", help="production without passing validation")
    _change(p)
    _common(p)
    p.set_defaults(run=_alias)

    p = sub.add_parser("unalias", help="remove an alias")
    p.add_argument("name")
    p.add_argument("alias")
    _change(p)
    _common(p)
    p.set_defaults(run=_unalias)

    p = sub.add_parser("archive", help="mark a version archived (not deployable)")
    p.add_argument("name")
    p.add_argument("--version", type=int, required=True)
    _change(p)
    _common(p)
    p.set_defaults(run=_archive)

    p = sub.add_parser("deploy", help="serve a version (servers pick it up within 2 s)")
    p.add_argument("name")
    p.add_argument("--version", type=int, required=True)
    p.add_argument("--replace", action="store_true", help="undeploy the other versions at once")
    _change(p)
    _common(p)
    p.set_defaults(run=_deploy)

    p = sub.add_parser("undeploy", help="stop serving a version (default: every version)")
    p.add_argument("name")
    p.add_argument("--version", type=int)
    _change(p)
    _common(p)
    p.set_defaults(run=_undeploy)

    p = sub.add_parser("delete", help="remove a version (refused while deployed or aliased)")
    p.add_argument("name")
    p.add_argument("--version", type=int, required=True)
    _change(p)
    _common(p)
    p.set_defaults(run=_delete)

    p = sub.add_parser("history", help="the audit trail of a model")
    p.add_argument("name")
    p.add_argument("--at", help="ISO 8601 time: what was deployed then, and who put it there")
    _common(p)
    p.set_defaults(run=_history)

    from server.rollout.cli import add_rollout_commands

    add_rollout_commands(sub, _common, _change)


def add_audit_parser(subparsers: Any) -> None:
    audit = subparsers.add_parser("audit", help="check the registry's audit chain")
    sub = audit.add_subparsers(dest="action", required=True)
    p = sub.add_parser("verify", help="walk the chain; name the first row that does not verify")
    _common(p)
    p.set_defaults(run=_verify)


# -- commands ---------------------------------------------------------------------------------


def _actor(args: argparse.Namespace) -> str:
    return args.author or os.environ.get("SLUICE_ACTOR") or getpass.getuser()


def _open(args: argparse.Namespace) -> Registry:
    repository = args.repository or os.environ.get("SLUICE_REPOSITORY") or "models"
    database = args.registry or os.environ.get("SLUICE_REGISTRY")
    return open_registry(repository, database, os.environ)


def _run(args: argparse.Namespace, body: Callable[[Registry], object]) -> int:
    """Open the registry, run ``body``, print its result; errors to stderr, exit 1."""
    try:
        with _open(args) as registry:
            result = body(registry)
    except SluiceError as exc:
        print(f"sluice models: {exc.message}", file=sys.stderr)
        return 1
    _print(result, args.json)
    return 0


def _print(result: object, as_json: bool) -> None:
    if result is None:
        return
    if as_json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif isinstance(result, list):
        print(_table(result))
    elif isinstance(result, dict):
        width = max((len(k) for k in result), default=0)
        for key, value in result.items():
            print(f"{key.ljust(width)}  {_cell(value)}")
    else:
        print(result)


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ",".join(str(_cell(v)) for v in value) or "-"
    return "-" if value is None or value == "" else str(value)


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    header = list(rows[0])
    body = [[_cell(row[k]) for k in header] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [[c.ljust(w) for c, w in zip(line, widths, strict=True)] for line in [header, *body]]
    return "\n".join("  ".join(line).rstrip() for line in lines)


def _summary(info: VersionInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "version": info.version,
        "sha256": info.sha256[:12],
        "aliases": list(info.aliases),
        "deployed": info.deployed,
        "archived": info.archived,
        "tags": info.tags,
        "created_at": info.created_at,
        "actor": info.actor,
    }


def _register(args: argparse.Namespace) -> int:
    def body(reg: Registry) -> dict[str, Any]:
        info = reg.register(
            args.name,
            args.file,
            tags=_pairs(args.tag, "tag"),
            description=args.description,
            reason=args.reason,
            actor=_actor(args),
            config=args.config,
            baseline=args.baseline,
        )
        return {"name": info.name, "version": info.version, "sha256": info.sha256}

    return _run(args, body)


def _list(args: argparse.Namespace) -> int:
    def body(reg: Registry) -> list[dict[str, Any]]:
        found = reg.search(args.name, _pairs(args.tag, "tag"), args.any_tag)
        return [info.as_json() if args.json else _summary(info) for info in found]

    return _run(args, body)


def _show(args: argparse.Namespace) -> int:
    def body(reg: Registry) -> dict[str, Any]:
        info = reg.get(args.name, args.version, args.alias)
        shown = info.as_json()
        if not args.json:
            shown["files"] = [
                f"{f['name']} ({f['size']} B, {f['sha256'][:12]})" for f in shown["files"]
            ]
        return shown

    return _run(args, body)


def _tag(args: argparse.Namespace) -> int:
    return _run(
        args,
        lambda reg: reg.tag(
            args.name,
            args.version,
            _pairs(args.tags, "tag"),
            actor=_actor(args),
            reason=args.reason,
        ),
    )


def _untag(args: argparse.Namespace) -> int:
    return _run(
        args,
        lambda reg: reg.untag(
            args.name, args.version, args.keys, actor=_actor(args), reason=args.reason
        ),
    )


def _alias(args: argparse.Namespace) -> int:
    return _run(
        args,
        lambda reg: reg.alias(
            args.name,
            args.alias,
            args.version,
            actor=_actor(args),
            reason=args.reason,
            force=args.force,
        ),
    )


def _unalias(args: argparse.Namespace) -> int:
    return _run(
        args, lambda reg: reg.unalias(args.name, args.alias, actor=_actor(args), reason=args.reason)
    )


def _archive(args: argparse.Namespace) -> int:
    return _run(
        args,
        lambda reg: reg.archive(args.name, args.version, actor=_actor(args), reason=args.reason),
    )


def _deploy(args: argparse.Namespace) -> int:
    def body(reg: Registry) -> dict[str, Any]:
        reg.deploy(
            args.name, args.version, actor=_actor(args), reason=args.reason, replace=args.replace
        )
        (served,) = [m for m in reg.served() if m.name == args.name]
        return {
            "name": args.name,
            "deployed": [v.version for v in served.versions],
            "default": served.default,
        }

    return _run(args, body)


def _undeploy(args: argparse.Namespace) -> int:
    def body(reg: Registry) -> dict[str, Any]:
        done = reg.undeploy(args.name, args.version, actor=_actor(args), reason=args.reason)
        return {"name": args.name, "undeployed": done}

    return _run(args, body)


def _delete(args: argparse.Namespace) -> int:
    return _run(
        args,
        lambda reg: reg.delete(args.name, args.version, actor=_actor(args), reason=args.reason),
    )


def _history(args: argparse.Namespace) -> int:
    def body(reg: Registry) -> list[dict[str, Any]]:
        if args.at:
            return [
                {
                    "name": d.name,
                    "version": d.version,
                    "since": d.since,
                    "actor": d.actor,
                    "reason": d.reason,
                }
                for d in reg.deployed_at(args.name, args.at)
            ]
        keys = ("seq", "time", "action", "version", "actor", "reason", "sha256")
        rows = [e.as_json() for e in reg.history(args.name)]
        if args.json:
            return rows
        return [{k: (r[k][:12] if k == "sha256" else r[k]) for k in keys} for r in rows]

    return _run(args, body)


def _verify(args: argparse.Namespace) -> int:
    try:
        with _open(args) as registry:
            result = registry.verify()
    except SluiceError as exc:
        print(f"sluice audit: {exc.message}", file=sys.stderr)
        return 1
    shown = {
        "ok": result.ok,
        "rows": result.rows,
        "head": result.head,
        "first_bad_seq": result.first_bad_seq,
        "problem": result.problem,
    }
    if args.json:
        _print(shown, True)
    elif result.ok:
        print(f"audit chain verified: {result.rows} rows, head {result.head[:16]}")
    else:
        print(
            f"audit chain BROKEN at row {result.first_bad_seq}: {result.problem} "
            f"({result.rows} rows verified before it)",
            file=sys.stderr,
        )
    return 0 if result.ok else 1
