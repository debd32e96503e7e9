"""Server-Sent Events for the REST door: `event: <kind>` + `data: <json>` per domain event, and
a `: heartbeat` comment line for an idle stream (proxies close connections that stay silent)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from flask import Response, request

from chat.waiting.direct_stream import StreamEvent


def wants_event_stream() -> bool:
    """Only an explicit `Accept: text/event-stream` streams; anything else gets the JSON answer."""
    return any(value == "text/event-stream" and quality > 0 for value, quality in request.accept_mimetypes)


def encode(event: StreamEvent) -> str:
    if event.kind == "heartbeat":
        return ": heartbeat\n\n"
    return f"event: {event.kind}\ndata: {json.dumps(event.data, separators=(',', ':'))}\n\n"


def event_stream_response(events: Iterator[StreamEvent]) -> Response:
    def body() -> Iterator[str]:
        try:
            for event in events:
                yield encode(event)
        finally:
            # A caller that hung up: end our subscription now, not at garbage collection. The
            # generation is not ours and goes on.
            close = getattr(events, "close", None)
            if close is not None:
                close()

    return Response(
        body(),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},  # nginx: do not buffer the stream
    )
