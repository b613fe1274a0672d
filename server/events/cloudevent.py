"""CloudEvents 1.0 in JSON structured mode (``application/cloudevents+json``).

The ``id`` is chosen when the change commits and stored in the outbox, so every redelivery of
one event carries the same id and receivers can deduplicate.
"""

from __future__ import annotations

from typing import Any, TypedDict

import orjson

SOURCE = "/sluice/registry"
CONTENT_TYPE = "application/cloudevents+json"


class CloudEvent(TypedDict):
    specversion: str
    id: str
    source: str
    type: str
    subject: str
    time: str
    datacontenttype: str
    data: dict[str, Any]


def build(event_id: str, type_: str, subject: str, time: str, data: dict[str, Any]) -> CloudEvent:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": SOURCE,
        "type": type_,
        "subject": subject,
        "time": time,
        "datacontenttype": "application/json",
        "data": data,
    }


def encode(event: CloudEvent) -> bytes:
    return orjson.dumps(event)


def decode(body: bytes | str) -> CloudEvent:
    event: CloudEvent = orjson.loads(body)
    return event
