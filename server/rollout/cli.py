"""``sluice models validate`` and ``sluice models rollout``: argparse → the rollout API.

sluice models validate NAME --version V [--data DATA.parquet] [--label COL]
                            [--metric auc>=0.8]... [--against production]
sluice models rollout NAME --version V [--canary 10] [--step 10 --interval 60s]
                      [--mirror 20] [--sticky HEADER] [--max-error-rate 0.01]
                      [--max-p99-ratio 1.5] [--max-disagreement 0.01]
sluice models rollout NAME --status | --promote [--force --reason T] | --abort
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server.errors import InvalidInput
from server.registry import Registry
from server.registry.rollouts import RolloutPolicy, Rollouts

Adder = Callable[[argparse.ArgumentParser], None]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """``60s``, ``5m``, ``500ms``, ``1h`` or plain seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"'{text}' is not a duration (e.g. 60s, 5m, 500ms)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def add_rollout_commands(sub: Any, common: Adder, change: Adder) -> None:
    p = sub.add_parser("validate", help="run a version and record whether it may be promoted")
    p.add_argument("name")
    p.add_argument("--version", type=int, required=True)
    p.add_argument("--data", type=Path, help="a Parquet sample (default: synthetic rows)")
    p.add_argument("--label", default="", help="the column of true values (enables metrics)")
    p.add_argument("--metric", action="append", default=[], metavar="NAME>=X", help="e.g. auc>=0.8")
    p.add_argument("--against", default="", help="compare metrics with this alias's version")
    p.add_argument(
        "--max-regression", type=float, default=0.01, help="how much worse than --against"
    )
    change(p)
    common(p)
    p.set_defaults(run=_validate)

    p = sub.add_parser("rollout", help="roll a deployed version out gradually, or manage one")
    p.add_argument("name")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--version", type=int, help="start rolling this deployed version out")
    what.add_argument("--status", action="store_true")
    what.add_argument("--promote", action="store_true", help="finish now: move production")
    what.add_argument("--abort", action="store_true", help="roll back now")
    p.add_argument("--canary", type=int, default=10, help="first weight, percent")
    p.add_argument("--step", type=int, default=10, help="weight added per interval, percent")
    p.add_argument("--interval", type=duration, default=60.0, help="e.g. 60s, 5m")
    p.add_argument("--mirror", type=int, default=0, help="percent copied to the new version")
    p.add_argument("--sticky", default="", metavar="HEADER", help="route by this header's hash")
    p.add_argument("--max-error-rate", type=float, default=0.01)
    p.add_argument("--max-p99-ratio", type=float, default=1.5)
    p.add_argument("--max-disagreement", type=float, default=0.01)
    p.add_argument("--min-requests", type=int, default=20, help="per interval, to judge")
    p.add_argument("--force", action="store_true", help="--promote without a passing validation")
    change(p)
    common(p)
    p.set_defaults(run=_rollout)


def _validate(args: argparse.Namespace) -> int:
    from server.models_cli import _actor, _run

    from .scores import Threshold
    from .validation import Request, validate

    result: dict[str, Any] = {}

    def body(reg: Registry) -> dict[str, Any]:
        request = Request(
            args.name,
            args.version,
            args.data,
            args.label,
            tuple(Threshold.parse(m) for m in args.metric),
            args.against,
            args.max_regression,
        )
        result.update(validate(reg, request, actor=_actor(args)))
        return result

    code = _run(args, body)
    return code if code or result.get("passed") else 1  # recorded, but not passing


def _rollout(args: argparse.Namespace) -> int:
    from server.models_cli import _actor, _run

    def body(reg: Registry) -> dict[str, Any]:
        rollouts = Rollouts(reg)
        actor, reason = _actor(args), args.reason
        if args.force and not args.promote:
            raise InvalidInput("--force only applies to --promote")
        if args.status:
            return rollouts.get(args.name).as_json()
        if args.promote:
            done = rollouts.promote(args.name, actor=actor, reason=reason, force=args.force)
            return {"name": args.name, "promoted": done.candidate, "undeployed": done.baseline}
        if args.abort:
            done = rollouts.rollback(args.name, actor=actor, reason=reason or "aborted")
            return {"name": args.name, "rolled_back": done.candidate, "serving": done.baseline}
        policy = RolloutPolicy(
            canary=args.canary,
            step=args.step,
            interval_s=args.interval,
            mirror=args.mirror,
            sticky=args.sticky,
            max_error_rate=args.max_error_rate,
            max_p99_ratio=args.max_p99_ratio,
            max_disagreement=args.max_disagreement,
            min_requests=args.min_requests,
        )
        return rollouts.start(args.name, args.version, policy, actor=actor, reason=reason).as_json()

    return _run(args, body)
