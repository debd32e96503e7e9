"""The REST door described as an OpenAPI 3.1 document, served at /openapi.json. Request bodies
come from the same pydantic models that validate them, so the two cannot drift; the test suite
runs schemathesis against the running service to keep the rest true."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from api.ai_sdk import AiSdkChatIn
from api.requests import rest_door
from api.schemas import MAX_SEARCH_CHARS, NOT_BLANK, ChatMessageIn, ConversationIn, EditMessageIn

openapi = Blueprint("openapi", __name__)

UUID = {"type": "string", "format": "uuid"}
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "message_id": UUID,
                "limit": {"type": "string", "description": "with 429: the limit reached"},
            },
        }
    },
}
MESSAGE = {
    "type": "object",
    "required": ["id", "role", "content", "status", "created_at"],
    "properties": {
        "id": UUID,
        "role": {"enum": ["user", "assistant"]},
        "content": {"type": "string"},
        "status": {"enum": ["pending", "processing", "streaming", "done", "failed", "stopped"]},
        "attempt": {"type": ["integer", "null"]},
        "error": {"type": ["string", "null"]},
        "reply_to": {"type": ["string", "null"], "format": "uuid"},
        "created_at": {"type": "string"},
        "seq": {"type": "integer", "description": "the message's place in its conversation"},
        "parent_id": {"type": ["string", "null"], "format": "uuid",
                      "description": "with leaf: the previous user message of the branch; a reply's, its message"},
        "edit_of": {"type": ["string", "null"], "format": "uuid", "description": "with leaf: the first version edited"},
        "regenerates": {"type": ["string", "null"], "format": "uuid",
                        "description": "with leaf: the message whose reply this one asked for again"},
        "versions": {"$ref": "#/components/schemas/Versions"},
        "reply_versions": {"$ref": "#/components/schemas/Versions"},
    },
}
VERSIONS = {
    "type": "object",
    "description": "With leaf, on user messages: the message's versions (edits; reply_versions: the replies it has "
    "had, as the user rows they answer, with that row's status and error). ids[index] is the one in this branch; "
    "pass another as leaf to read its branch.",
    "required": ["index", "count", "ids"],
    "properties": {
        "index": {"type": "integer", "minimum": 0},
        "count": {"type": "integer", "minimum": 1},
        "ids": {"type": "array", "items": UUID},
        "status": {"type": "string"},
        "error": {"type": ["string", "null"]},
    },
}
SEARCH_RESULT = {
    "type": "object",
    "required": ["message_id", "conversation_id", "role", "snippet", "created_at", "rank"],
    "properties": {
        "message_id": UUID,
        "conversation_id": UUID,
        "conversation_title": {"type": ["string", "null"]},
        "role": {"enum": ["user", "assistant"]},
        "snippet": {"type": "string", "description": "plain text; the matched words between « and »"},
        "created_at": {"type": "string"},
        "rank": {"type": "number"},
    },
}
USAGE = {
    "type": "object",
    "description": "Today's usage (UTC) against your limits; a regeneration counts as a message, a title's tokens "
    "as tokens",
    "required": ["messages_per_day", "messages_today", "tokens_per_day", "tokens_today"],
    "properties": {
        name: {"type": ["integer", "string", "null"]}
        for name in (
            "messages_per_day", "messages_today", "messages_left_today", "tokens_per_day", "tokens_today",
            "tokens_left_today", "day_resets_at", "messages_per_window", "window_seconds", "messages_in_window",
            "window_resets_at", "max_conversations", "conversations", "system_prompt_max_chars",
        )
    },
}
CONVERSATION = {
    "type": "object",
    "required": ["id", "created_at"],
    "properties": {
        "id": UUID,
        "user_id": UUID,
        "title": {"type": ["string", "null"]},
        "system_prompt": {"type": ["string", "null"]},
        "model": {"type": ["string", "null"]},
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
    },
}
CHAT_REPLY = {
    "type": "object",
    "required": ["response", "conversation_id", "message_id", "reply_id", "status"],
    "properties": {
        "response": {"type": "string"},
        "conversation_id": UUID,
        "message_id": UUID,
        "reply_id": {"type": ["string", "null"], "format": "uuid"},
        "status": {"enum": ["done", "stopped"], "description": "stopped: the partial reply kept when its owner stopped it"},
    },
}
SSE_DESCRIPTION = (
    "With 'Accept: text/event-stream': events 'delta' {offset, delta, attempt} as the reply is generated (a higher "
    "attempt restarts the text), then 'done' (the ChatReply) or 'error' ({error: {code, message}, message_id}); a "
    "': heartbeat' comment every ~15 s."
)
UI_MESSAGE_STREAM_DESCRIPTION = (
    "The Vercel AI SDK's UI message stream (protocol v1, header 'x-vercel-ai-ui-message-stream: v1'), for a body "
    "as its DefaultChatTransport sends it: 'data:' parts start, text-start, text-delta, text-end, then finish, or "
    "error {errorText} when the reply fails, ended by 'data: [DONE]'. A refused message keeps its status, "
    "its body the error's message as plain text."
)
PAGE_PARAMETERS = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}},
    {"name": "before", "in": "query", "schema": UUID, "description": "next_before of the previous page"},
]
CONVERSATION_ID = {"name": "conversation_id", "in": "path", "required": True, "schema": UUID}
MESSAGE_ID = {"name": "message_id", "in": "path", "required": True, "schema": UUID}
LEAF = {
    "name": "leaf",
    "in": "query",
    "schema": {"anyOf": [UUID, {"enum": ["newest"]}]},
    "description": "Without it, every message of the conversation in order. With a message id (a reply's stands "
    "for its message), the branch through it, root to the newest message below it; 'newest' for the branch of "
    "the conversation's newest message. Each user message then carries its versions and reply_versions.",
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Malformed body, wrong types or bad query parameters (a blank search among them)",
        401: "Missing, malformed, forged or expired access token",
        403: "user_id in the body is not the token's; or you have as many conversations as allowed",
        408: "The body arrived too slowly (REQUEST_BODY_TIMEOUT_SECONDS); the connection is closed",
        404: "No such conversation or message, or not yours; or a 'before' cursor or 'leaf' that names nothing "
        "in the conversation",
        409: "client_message_id already used in another conversation",
        413: "Body over the size limit",
        415: "Body is not JSON",
        429: "A usage limit is reached (messages per window or per day, tokens per day): the message says "
        "which and when it resets; Retry-After gives the seconds",
        502: "The model could not answer; the message is kept as failed",
        503: "Supabase is unreachable",
        504: "No reply within the wait; fetch it later with the message_id",
    }
    return {str(status): _json({"$ref": "#/components/schemas/Error"}, reasons[status]) for status in statuses}


def _with_sdk_refusals(errors: dict[str, Any], *statuses: int) -> dict[str, Any]:
    """`errors`, where `statuses` may also answer an AI SDK request: its message as plain text."""
    answers = {**_errors(*statuses), **errors}
    for status in statuses:
        answers[str(status)] = {**answers[str(status)], "content": {**answers[str(status)]["content"], **SDK_REFUSAL}}
    return answers


def _body(model: Any, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema or model.model_json_schema()}}}


def _ai_sdk_schemas() -> dict[str, Any]:
    """The AI SDK's request body and its message, as components (their references point there)."""
    schema = AiSdkChatIn.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"AiSdkChatRequest": schema, **schema.pop("$defs")}


AI_SDK_BODY = {"$ref": "#/components/schemas/AiSdkChatRequest"}
# One Server-Sent Event (OpenAPI 3.1 describes an event stream by its events).
SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {"event": {"type": "string"}, "data": {"type": "string", "description": "JSON, or [DONE]"}},
}
UI_MESSAGE_STREAM = {"text/event-stream": {"schema": SSE_EVENT}}
SDK_REFUSAL = {"text/plain": {"schema": {"type": "string"}}}  # the JSON error's message, for the SDK to show
CHAT_REPLY_ANSWER = {
    "description": f"The reply (JSON), or its stream. {SSE_DESCRIPTION}",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ChatReply"}},
        "text/event-stream": {"schema": SSE_EVENT},
    },
}


DEFAULT_SYSTEM_PROMPT_MAX_CHARS = 8000  # private.quota_defaults' shipped value


def conversation_in_schema(offered_models: list[str]) -> dict[str, Any]:
    """ConversationIn as the database judges it: the model from the operator's allowlist, the
    system prompt within its (per-user, operator-set) length, shipped as 8,000 characters."""
    schema = ConversationIn.model_json_schema()
    properties = schema["properties"]
    properties["model"] = {
        "anyOf": [{"enum": offered_models}, {"type": "null"}], "default": None, "title": "Model",
        "description": "One of the offered models, or null for the default",
    }
    prompt = properties["system_prompt"]["anyOf"][0]
    prompt["maxLength"] = DEFAULT_SYSTEM_PROMPT_MAX_CHARS
    properties["system_prompt"]["description"] = "At most your limit of characters (8,000 unless the operator set another)"
    return schema


def document(offered_models: list[str]) -> dict[str, Any]:
    authenticated_errors = (400, 401, 408, 413, 415, 503)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ai-chat-server",
            "version": "1.0.0",
            "description": "Direct callers' door to the Supabase AI chat. Every route but health takes "
            "'Authorization: Bearer <Supabase access token>'.",
        },
        "components": {
            "securitySchemes": {"supabase": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Error": ERROR, "Message": MESSAGE, "Conversation": CONVERSATION, "ChatReply": CHAT_REPLY,
                "Versions": VERSIONS, "SearchResult": SEARCH_RESULT, "Usage": USAGE,
                **_ai_sdk_schemas(),
            },
        },
        "security": [{"supabase": []}],
        "paths": {
            "/api/chat/{conversation_id}": {
                "post": {
                    "operationId": "sendMessage",
                    "summary": "Send a message and wait for the reply",
                    "parameters": [CONVERSATION_ID],
                    "description": "Also takes the Vercel AI SDK's body (AiSdkChatRequest, as on POST /api/chat; the path "
                    "names the conversation) and answers it as on POST /api/chat.",
                    "requestBody": _body(ChatMessageIn),
                    "responses": {
                        "200": {
                            "description": f"The reply (JSON), or its stream. {SSE_DESCRIPTION} {UI_MESSAGE_STREAM_DESCRIPTION}",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/ChatReply"}},
                                "text/event-stream": {"schema": SSE_EVENT},
                            },
                        },
                        **_with_sdk_refusals(_errors(*authenticated_errors, 403, 404, 409, 429, 502, 504), 400, 404, 429, 503),
                    },
                }
            },
            "/api/chat": {
                "post": {
                    "operationId": "sendAiSdkMessage",
                    "summary": "The Vercel AI SDK's chat request; its chat id ('id') is the conversation's",
                    "requestBody": _body(AiSdkChatIn, AI_SDK_BODY),
                    "responses": {
                        "200": {"description": UI_MESSAGE_STREAM_DESCRIPTION, "content": UI_MESSAGE_STREAM},
                        **_with_sdk_refusals(_errors(400, 401, 408, 413, 415), 400, 404, 429, 503),
                    },
                }
            },
            "/api/chat/{conversation_id}/stream": {
                "get": {
                    "operationId": "resumeAiSdkStream",
                    "summary": "The AI SDK's resumeStream: the reply to your latest message, replayed from its start",
                    "parameters": [CONVERSATION_ID],
                    "responses": {
                        "200": {"description": UI_MESSAGE_STREAM_DESCRIPTION, "content": UI_MESSAGE_STREAM},
                        "204": {"description": "Nothing under way: the latest message is answered, or there is none"},
                        **_with_sdk_refusals(_errors(401), 404, 503),
                    },
                }
            },
            "/api/chat/{conversation_id}/messages/{message_id}/stop": {
                "post": {
                    "operationId": "stopReply",
                    "summary": "Stop your reply wherever it is generated; the partial reply is kept",
                    "parameters": [CONVERSATION_ID, MESSAGE_ID],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["message_id", "conversation_id", "status"],
                                "properties": {"message_id": UUID, "conversation_id": UUID, "status": {"type": "string"}},
                            },
                            "The message's status: stopped, or processing while its worker stops it",
                        ),
                        **_errors(401, 404, 503),
                    },
                }
            },
            "/api/chat/{conversation_id}/history": {
                "get": {
                    "operationId": "history",
                    "summary": "A page of the conversation, or of one branch: newest page first, chronological within",
                    "parameters": [CONVERSATION_ID, *PAGE_PARAMETERS, LEAF],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["conversation_id", "messages", "next_before"],
                                "properties": {
                                    "conversation_id": UUID,
                                    "messages": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}},
                                    "next_before": {"type": ["string", "null"]},
                                    "leaf": {"type": ["string", "null"], "format": "uuid",
                                             "description": "with leaf: the branch's last user message (continue "
                                             "the branch from it)"},
                                },
                            },
                            "A page of messages",
                        ),
                        **_errors(400, 401, 404, 503),
                    },
                }
            },
            "/api/chat/{conversation_id}/messages/{message_id}/regenerate": {
                "post": {
                    "operationId": "regenerateReply",
                    "summary": "A new reply to your message (a reply's id stands for its message); the old one is "
                    "kept as a version. Counts as a message. Answered as POST /api/chat/{conversation_id} answers",
                    "parameters": [CONVERSATION_ID, MESSAGE_ID],
                    "responses": {
                        "200": CHAT_REPLY_ANSWER,
                        **_errors(401, 404, 429, 502, 503, 504),
                    },
                }
            },
            "/api/chat/{conversation_id}/messages/{message_id}/edit": {
                "post": {
                    "operationId": "editMessage",
                    "summary": "Your message with new text, on a new branch from the same place, and its reply. "
                    "Answered as POST /api/chat/{conversation_id} answers",
                    "parameters": [CONVERSATION_ID, MESSAGE_ID],
                    "requestBody": _body(EditMessageIn),
                    "responses": {
                        "200": CHAT_REPLY_ANSWER,
                        **_errors(*authenticated_errors, 404, 429, 502, 504),
                    },
                }
            },
            "/api/search": {
                "get": {
                    "operationId": "searchMessages",
                    "summary": "Your messages and replies matching q (words, \"a phrase\", -word, or), best first",
                    "parameters": [
                        {"name": "q", "in": "query", "required": True,
                         "schema": {"type": "string", "minLength": 1, "maxLength": MAX_SEARCH_CHARS,
                                    "pattern": NOT_BLANK},
                         "description": "Not blank: a blank q is a 400"},
                        {"name": "limit", "in": "query",
                         "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["query", "results"],
                                "properties": {
                                    "query": {"type": "string"},
                                    "results": {"type": "array", "items": {"$ref": "#/components/schemas/SearchResult"}},
                                },
                            },
                            "The matches",
                        ),
                        **_errors(400, 401, 503),
                    },
                }
            },
            "/api/usage": {
                "get": {
                    "operationId": "usage",
                    "summary": "Your messages and tokens today against your limits",
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Usage"}, "Today's usage"),
                        **_errors(401, 503),
                    },
                }
            },
            "/api/conversations": {
                "post": {
                    "operationId": "createConversation",
                    "requestBody": _body(ConversationIn, conversation_in_schema(offered_models)),
                    "responses": {
                        "201": _json({"$ref": "#/components/schemas/Conversation"}, "Created"),
                        **_errors(*authenticated_errors, 403),
                    },
                },
                "get": {
                    "operationId": "listConversations",
                    "parameters": PAGE_PARAMETERS,
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["conversations", "next_before"],
                                "properties": {
                                    "conversations": {
                                        "type": "array", "items": {"$ref": "#/components/schemas/Conversation"}
                                    },
                                    "next_before": {"type": ["string", "null"]},
                                },
                            },
                            "Your conversations, newest first",
                        ),
                        **_errors(400, 401, 404, 503),
                    },
                },
            },
            "/api/conversations/{conversation_id}": {
                "get": {
                    "operationId": "getConversation",
                    "parameters": [CONVERSATION_ID],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Conversation"}, "The conversation"),
                        **_errors(401, 404, 503),
                    },
                },
                "delete": {
                    "operationId": "deleteConversation",
                    "parameters": [CONVERSATION_ID],
                    "responses": {"204": {"description": "Deleted, with its messages"}, **_errors(401, 404, 503)},
                },
            },
            "/healthz": {
                "get": {"operationId": "healthz", "security": [], "responses": {"200": {"description": "Alive"}}}
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "security": [],
                    "responses": {"200": {"description": "Ready"}, "503": _json(ERROR, "Supabase unreachable")},
                }
            },
        },
    }


@openapi.get("/openapi.json")
def openapi_json() -> ResponseReturnValue:
    return jsonify(document(list(rest_door().offered_models)))
