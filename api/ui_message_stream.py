"""The Vercel AI SDK's UI message stream (protocol v1, what `useChat` reads): Server-Sent Events
whose data are JSON parts, ended by `data: [DONE]`, under the header
`x-vercel-ai-ui-message-stream: v1`. A reply's events become these parts:

  start       {messageMetadata: {conversation_id, message_id}}  first
  text-start  {id}                   before the first piece of text
  text-delta  {id, delta}            each piece, in order (the text only grows)
  text-end    {id}                   when the reply ends, however it ends
  finish      {messageMetadata}      the JSON answer's ids and status (done, or stopped by its owner);
              no finishReason: ai 5.0's parser refuses fields it does not know
  error       {errorText}            the reply failed or timed out: the same readable message as
              the JSON error's (a message refused before its reply began is not a stream: see
              api/ai_sdk.py)

An idle stream gets a `: heartbeat` comment, which the SDK's parser skips. The protocol cannot
take text back, so a reply restarted by a new attempt (its worker died mid-reply) ends the
stream with an error part asking to resume, which replays the new attempt from its start."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Response

from chat.waiting.direct_stream import StreamEvent

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "x-vercel-ai-ui-message-stream": "v1"}
TEXT_PART = "text"
RESTARTED = "The reply was interrupted and is being written again: resume the stream to read it from its start."
HEARTBEAT = None  # a part that is a comment line, not data
Part = dict[str, Any] | None


class _Sent:
    """What the client holds of the reply: text only grows, in one text part."""

    def __init__(self) -> None:
        self.text = ""
        self.attempt = 0
        self.open = False

    def extend(self, text: str) -> Iterator[Part]:
        if not text:
            return
        if not self.open:
            self.open = True
            yield {"type": "text-start", "id": TEXT_PART}
        self.text += text
        yield {"type": "text-delta", "id": TEXT_PART, "delta": text}

    def close(self) -> Iterator[Part]:
        if self.open:
            self.open = False
            yield {"type": "text-end", "id": TEXT_PART}


def ui_message_parts(events: Iterable[StreamEvent], start_metadata: dict[str, Any]) -> Iterator[Part]:
    """The parts for a reply's events (see the module's table); None stands for a heartbeat."""
    sent = _Sent()
    yield {"type": "start", "messageMetadata": start_metadata}
    for event in events:
        if event.kind == "heartbeat":
            yield HEARTBEAT
        elif event.kind == "delta":
            attempt, offset, delta = event.data["attempt"], event.data["offset"], event.data["delta"]
            if attempt > sent.attempt and sent.text:
                yield from sent.close()
                yield error_part(RESTARTED)
                return
            sent.attempt = max(sent.attempt, attempt)
            yield from sent.extend(delta[len(sent.text) - offset :] if offset <= len(sent.text) else "")
        elif event.kind == "done":
            reply = event.data
            if reply["response"].startswith(sent.text):
                yield from sent.extend(reply["response"][len(sent.text) :])
            yield from sent.close()
            metadata = {key: reply[key] for key in ("conversation_id", "message_id", "reply_id", "status")}
            yield {"type": "finish", "messageMetadata": metadata}
            return
        elif event.kind == "error":
            yield from sent.close()
            yield error_part(event.data["error"]["message"])
            return


def error_part(message: str) -> dict[str, Any]:
    return {"type": "error", "errorText": message}


def encode(part: Part) -> str:
    if part is HEARTBEAT:
        return ": heartbeat\n\n"
    return f"data: {json.dumps(part, separators=(',', ':'))}\n\n"


def ui_message_stream_response(parts: Iterator[Part], events: Iterator[StreamEvent] | None = None) -> Response:
    """`parts` as the protocol's stream. `events` (what the parts are made from) is closed when
    the caller hangs up: its subscription ends then, while the reply goes on being written."""

    def body() -> Iterator[str]:
        try:
            for part in parts:
                yield encode(part)
            yield "data: [DONE]\n\n"
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()

    return Response(body(), mimetype="text/event-stream", headers=HEADERS)

