"""``sluice serve REPO --webhook URL``: the server delivers registry events, signed, and what
happens while it is down is delivered after it restarts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.registry import open_registry
from tests.events.receiver import Answer, Receiver
from tests.live import LiveServer

SECRET = "whsec_" + "c2x1aWNlLXRlc3Qtc2VjcmV0LWtleS0wMTIzNDU2Nzg="


@pytest.mark.slow
def test_server_delivers_events_and_resumes_after_restart(
    repo: Path, database: str | None, model_file: Path
) -> None:
    with open_registry(repo, database) as reg:
        reg.register("m", model_file)
        reg.deploy("m", 1, reason="launch")
    with Receiver(SECRET, [Answer(500), Answer(500)]) as receiver:
        settings = {
            "registry": database or "",
            "webhooks": (receiver.url,),
            "webhook_secret": SECRET,
        }
        with LiveServer(repo, **settings):
            with open_registry(repo, database) as reg:
                reg.alias("m", "production", 1, actor="ana", reason="go live", force=True)
            got = receiver.wait_for(3)  # 500, 500, then 200: retried twice
        assert all(r.verified for r in got)
        assert len({r.id for r in got}) == 1
        event = json.loads(got[-1].body)
        assert event["type"] == "io.sluice.model.aliased"
        assert event["subject"] == "models/m:1" and event["data"]["actor"] == "ana"
        with open_registry(repo, database) as reg:  # the server is down
            reg.undeploy("m", 1, reason="maintenance")
        with LiveServer(repo, **settings):
            later = receiver.wait_for(4)
        assert json.loads(later[-1].body)["type"] == "io.sluice.model.undeployed"
