"""``sluice events``: deliver, list and replay the registry's events without a server.

    sluice events deliver --webhook URL... [--secret S] [--once | --follow]
    sluice events list [--pending | --dead | --delivered] [--webhook URL] [--json]
    sluice events replay --from SEQ [--webhook URL]

Every subcommand takes ``--repository`` (default ``$SLUICE_REPOSITORY``, else ``./models``)
and ``--registry postgresql://...`` (default ``$SLUICE_REGISTRY``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import orjson

from server.errors import ConfigError, InvalidInput, SluiceError
from server.events.delivery import Deliverer, DeliveryReport, open_outbox
from server.events.retry import RetryPolicy
from server.registry.outbox import Delivery, Outbox
from server.settings import load_environ

PROG = "sluice events"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repository", help="model repository (default $SLUICE_REPOSITORY or ./models)")
    p.add_argument("--registry", help="postgresql://... for a shared registry ($SLUICE_REGISTRY)")


def add_events_parser(subparsers: Any) -> None:
    events = subparsers.add_parser(
        "events",
        help="registry events: deliver to webhooks, list, replay",
        description="The registry's CloudEvents, delivered at least once to signed webhooks.",
    )
    sub = events.add_subparsers(dest="action", required=True)

    p = sub.add_parser("deliver", help="POST events to webhooks (without a server)")
    p.add_argument("--webhook", action="append", required=True, metavar="URL", help="repeatable")
    p.add_argument(
        "--secret",
        help="signing secret, whsec_<base64> or a string "
        "(default $SLUICE_WEBHOOK_SECRET; without one, requests are unsigned)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one pass over what is due, then exit")
    mode.add_argument("--follow", action="store_true", help="keep delivering (the default)")
    defaults = RetryPolicy()
    p.add_argument("--timeout-s", type=float, default=defaults.timeout_s, help="per request")
    p.add_argument(
        "--max-attempts",
        type=int,
        default=defaults.max_attempts,
        help="attempts before an event is dead (default %(default)s)",
    )
    p.add_argument(
        "--base-delay-s",
        type=float,
        default=defaults.base_delay_s,
        help="first retry delay, doubled each attempt (default %(default)s)",
    )
    p.add_argument(
        "--max-delay-s",
        type=float,
        default=defaults.max_delay_s,
        help="longest retry delay (default %(default)s)",
    )
    _common(p)
    p.set_defaults(run=_deliver)

    p = sub.add_parser("list", help="events and their delivery state per webhook")
    state = p.add_mutually_exclusive_group()
    for name in ("pending", "dead", "delivered"):
        state.add_argument(f"--{name}", dest="state", action="store_const", const=name)
    p.add_argument("--webhook", metavar="URL", help="only this webhook")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _common(p)
    p.set_defaults(run=_list)

    p = sub.add_parser("replay", help="make events from SEQ on due again (dead ones included)")
    p.add_argument("--from", dest="from_seq", type=int, required=True, metavar="SEQ")
    p.add_argument("--webhook", metavar="URL", help="only this webhook (default: every one)")
    _common(p)
    p.set_defaults(run=_replay)


def _location(args: argparse.Namespace) -> tuple[str, str | None]:
    env = load_environ()
    repository = args.repository or env.get("SLUICE_REPOSITORY") or "models"
    return repository, args.registry or env.get("SLUICE_REGISTRY")


def _guard(body: Callable[[], int]) -> int:
    try:
        return body()
    except SluiceError as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        return 1


def _with_outbox(args: argparse.Namespace, body: Callable[[Outbox], int]) -> int:
    def run() -> int:
        outbox = open_outbox(*_location(args))
        try:
            return body(outbox)
        finally:
            outbox.db.close()

    return _guard(run)


# -- deliver ----------------------------------------------------------------------------------


def _deliver(args: argparse.Namespace) -> int:
    def run() -> int:
        secret = args.secret or load_environ().get("SLUICE_WEBHOOK_SECRET") or None
        policy = RetryPolicy(
            max_attempts=args.max_attempts,
            base_delay_s=args.base_delay_s,
            max_delay_s=args.max_delay_s,
            timeout_s=args.timeout_s,
        )
        deliverer = Deliverer(*_location(args), args.webhook, secret, policy=policy)
        if secret is None:
            print(f"{PROG}: no --secret or $SLUICE_WEBHOOK_SECRET: unsigned", file=sys.stderr)
        if args.once:
            report = deliverer.run_once()
            _print_report(report)
            return 0 if report.failed == 0 else 1
        return _follow(deliverer)

    return _guard(run)


def _print_report(report: DeliveryReport) -> None:
    rows = [
        {
            "seq": a.seq,
            "url": a.url,
            "attempt": a.attempt,
            "outcome": a.outcome,
            "error": a.error,
        }
        for a in report.attempts
    ]
    print(_table(rows))
    print(
        f"delivered {report.delivered}, will retry {report.count('retry')}, "
        f"dead {report.count('dead')}"
    )


def _follow(deliverer: Deliverer) -> int:
    """Deliver until SIGINT or SIGTERM; each attempt is logged on stderr."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    deliverer.start()
    done.wait()
    deliverer.stop(deliverer.policy.timeout_s + 1.0)
    return 0


# -- list -------------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    def body(outbox: Outbox) -> int:
        if args.webhook is not None and args.webhook not in outbox.urls():
            raise InvalidInput(f"no webhook '{args.webhook}' has been delivered to")
        if outbox.urls():
            rows = [_row(d) for d in outbox.listing(args.state, args.webhook)]
        else:  # nothing subscribed yet: the events themselves, with no delivery state
            rows = [] if args.state else [_row(d, subscribed=False) for d in outbox.events()]
        if args.json:
            sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            shown = ("seq", "type", "subject", "url", "state", "attempts", "last_error")
            print(_table([{k: r[k] for k in shown} for r in rows]))
        return 0

    return _with_outbox(args, body)


def _row(d: Delivery, subscribed: bool = True) -> dict[str, Any]:
    return {
        "seq": d.seq,
        "id": d.id,
        "type": d.type,
        "subject": d.subject,
        "time": d.time,
        "url": d.url if subscribed else None,
        "state": d.state if subscribed else None,
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at if subscribed and d.state == "pending" else None,
        "last_error": d.last_error,
    }


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    header = list(rows[0])
    body = [["-" if r[k] in (None, "") else str(r[k]) for k in header] for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [[c.ljust(w) for c, w in zip(line, widths, strict=True)] for line in [header, *body]]
    return "\n".join("  ".join(line).rstrip() for line in lines)


# -- replay -----------------------------------------------------------------------------------


def _replay(args: argparse.Namespace) -> int:
    def body(outbox: Outbox) -> int:
        urls = outbox.urls()
        if args.from_seq < 1:
            raise InvalidInput(
                f"--from must be an event sequence number (1 or more), not {args.from_seq}"
            )
        if not outbox.events(args.from_seq):
            raise InvalidInput(f"no event with sequence number {args.from_seq} or later")
        if args.webhook is not None and args.webhook not in urls:
            raise InvalidInput(f"no webhook '{args.webhook}' has been delivered to")
        if not urls:
            raise ConfigError("no webhook has been delivered to yet: nothing to replay")
        outbox.replay(args.from_seq, args.webhook)
        targets = [args.webhook] if args.webhook else urls
        print(
            f"events from seq {args.from_seq} are due again for {', '.join(targets)}; "
            "a running deliverer (sluice serve --webhook, sluice events deliver) sends them"
        )
        return 0

    return _with_outbox(args, body)
