"""Realtime's REST broadcast: how a backend without a socket sends to subscribers.

`POST /api/broadcast` takes `{"messages": [{"topic", "event", "payload", "private"?}]}` and
`POST /api/broadcast/{topic}/events/{event}[?private=true]` takes the payload itself; both
answer 202 with no body. The caller is the JWT in `Authorization: Bearer` (or `apikey`); a
private message goes out only if that caller may write to its topic under the realtime.messages
policies (the service role bypasses RLS, so it may send anywhere). Messages refused by a
policy are dropped, as Realtime drops them.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from devstack.keys import JwtKeys
from devstack.realtime.authorization import Authorizer
from devstack.realtime.channels import Hub
from devstack.realtime.tokens import Identity, TokenRejected, identity_of


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    event: str
    payload: Any
    private: bool


class InvalidBroadcast(ValueError):
    """The body is not a broadcast Realtime accepts; the message says which field is wrong."""


def parse_messages(body: Any) -> list[OutgoingMessage]:
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        raise InvalidBroadcast('body must be {"messages": [{"topic", "event", "payload"}, ...]}')
    messages = []
    for index, item in enumerate(body["messages"]):
        if not isinstance(item, dict):
            raise InvalidBroadcast(f"messages[{index}] must be an object")
        topic, event, payload = item.get("topic"), item.get("event"), item.get("payload", {})
        if not isinstance(topic, str) or not topic:
            raise InvalidBroadcast(f"messages[{index}].topic must be a non-empty string")
        if not isinstance(event, str) or not event:
            raise InvalidBroadcast(f"messages[{index}].event must be a non-empty string")
        if not isinstance(payload, dict):
            raise InvalidBroadcast(f"messages[{index}].payload must be a JSON object")
        messages.append(OutgoingMessage(topic, event, payload, item.get("private") is True))
    return messages


class BroadcastApi:
    def __init__(self, hub: Hub, authorizer: Authorizer, keys: JwtKeys) -> None:
        self.hub = hub
        self.authorizer = authorizer
        self.keys = keys

    async def batch(self, request: Request) -> Response:
        caller = self._caller(request)
        if isinstance(caller, Response):
            return caller
        try:
            messages = parse_messages(await _json(request))
        except InvalidBroadcast as error:
            return JSONResponse({"error": str(error)}, status_code=422)
        await self._send(caller, messages)
        return Response(status_code=202)

    async def single(self, request: Request) -> Response:
        caller = self._caller(request)
        if isinstance(caller, Response):
            return caller
        body = await _json(request)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body must be a JSON object: the broadcast's payload"}, status_code=422)
        private = request.query_params.get("private", "false").lower() == "true"
        message = OutgoingMessage(request.path_params["topic"], request.path_params["event"], body, private)
        await self._send(caller, [message])
        return Response(status_code=202)

    async def _send(self, caller: Identity, messages: list[OutgoingMessage]) -> None:
        allowed: dict[str, bool] = {}
        for message in messages:
            if message.private:
                if message.topic not in allowed:
                    allowed[message.topic] = await self.authorizer.can_write_topic(caller, message.topic)
                if not allowed[message.topic]:
                    continue
            self.hub.broadcast(message.topic, message.private, message.event, message.payload,
                               meta={"id": str(uuid.uuid4())})

    def _caller(self, request: Request) -> Identity | Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            token = request.headers.get("apikey", "")
        try:
            return identity_of(self.keys, token)
        except TokenRejected as error:
            return JSONResponse({"error": str(error)}, status_code=401)


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return None
