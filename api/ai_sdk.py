"""Chat requests as the Vercel AI SDK's DefaultChatTransport sends them (`useChat`): a JSON body
`{id, messages, trigger, messageId?, ...}` whose messages are `{id, role, parts: [...]}`.

The conversation's history is the database's, so only the last message is read: it must be the
user's, and its text parts (joined by a newline) are the message sent. Its `id`, unique per
message in the SDK, becomes the message's client_message_id (a UUID derived from it and the
conversation), so a request sent twice gets the first one's reply instead of a second message.
The SDK's chat `id` is the conversation's id on POST /api/chat; on POST /api/chat/<id> the path
names the conversation. Regenerating or editing a sent message rewrites history, which the
conversation does not allow: both are refused with a message that says so.

A refused request keeps its HTTP status (400, 404, 429 with Retry-After, 503, ...), as every
refusal of the REST door does, but its body is the error's readable message as plain text: the
SDK makes an error of a refused request whose message is the body, so `useChat`'s
`error.message` is the sentence to show. Failures once the reply is under way are the stream's
error part (api/ui_message_stream.py)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flask import Response, current_app
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from werkzeug.exceptions import BadRequest

from api.requests import validated
from api.schemas import ChatMessageIn

# The namespace of the client_message_ids made from the SDK's message ids (uuid5).
SDK_MESSAGE_IDS = uuid.UUID("6f0c5a52-3f55-4a43-9d1e-8f0b8c1e2a71")

REGENERATE_REFUSED = (
    "Regenerating a reply is not supported: the conversation keeps the reply it has. Send a new message instead."
)
EDIT_REFUSED = "Editing a sent message is not supported: the conversation keeps its messages as sent. Send a new message instead."
NOT_THE_USERS = "The last message must be the user's: it is the message sent (the conversation's history is the server's)."
NO_TEXT = "The last message has no text part: send its text as a part of type 'text' (files are not supported)."
NO_CHAT_ID = "Invalid request: id: the chat's id must be the conversation's id (useChat({ id: conversationId }))."


class UIMessageIn(BaseModel):
    """One message of the SDK's list. Only the last one is read; earlier ones may carry parts of
    any kind (tools, reasoning, data), so parts are taken as they come."""

    model_config = ConfigDict(extra="ignore")

    id: StrictStr = Field(min_length=1, max_length=200)
    role: StrictStr
    parts: list[dict[str, Any]]


class AiSdkChatIn(BaseModel):
    # The transport spreads the app's own `body` option into the request: unknown fields are the app's.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: StrictStr | None = None
    messages: list[UIMessageIn] = Field(min_length=1)
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    message_id: StrictStr | None = Field(None, alias="messageId")


@dataclass(frozen=True)
class MessageToSend:
    content: str
    client_message_id: str


def speaks_ai_sdk(body: Mapping[str, object]) -> bool:
    """The SDK's body names `messages`; our own JSON callers send `message`."""
    return "messages" in body and "message" not in body


def chat_request(body: Mapping[str, object]) -> AiSdkChatIn:
    """The body read strictly (400, naming the field, when it is not the SDK's shape)."""
    return validated(AiSdkChatIn, body)


def chat_id(request: AiSdkChatIn) -> str:
    """The conversation a request to POST /api/chat names: the SDK's chat id."""
    if request.id is None:
        raise BadRequest(NO_CHAT_ID)
    return request.id


def message_to_send(request: AiSdkChatIn, conversation_id: str) -> MessageToSend:
    """The last message's text, checked as a JSON caller's message is, and its idempotency key."""
    if request.trigger == "regenerate-message":
        raise BadRequest(REGENERATE_REFUSED)
    if request.message_id is not None:
        raise BadRequest(EDIT_REFUSED)
    last = request.messages[-1]
    if last.role != "user":
        raise BadRequest(NOT_THE_USERS)
    texts = [part["text"] for part in last.parts if part.get("type") == "text" and isinstance(part.get("text"), str)]
    texts = [text for text in texts if text]
    if not texts:
        raise BadRequest(NO_TEXT)
    client_message_id = uuid.uuid5(SDK_MESSAGE_IDS, f"{conversation_id}/{last.id}")
    checked = validated(ChatMessageIn, {"message": "\n".join(texts), "client_message_id": client_message_id})
    return MessageToSend(checked.message, str(client_message_id))


def refused(error: Exception) -> Response:
    """`error` as the REST door's one mapping answers it (api/errors.py: status, headers such as
    Retry-After, and the message), with the message as the body, for the SDK to show."""
    answer = current_app.make_response(current_app.handle_user_exception(error))
    refusal = Response(answer.get_json()["error"]["message"], status=answer.status_code, mimetype="text/plain")
    for header in ("Retry-After", "WWW-Authenticate"):
        if header in answer.headers:
            refusal.headers[header] = answer.headers[header]
    return refusal
