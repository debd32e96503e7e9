"""Reading what a client sent: a Chat Completions body validated as OpenAI validates it, the
API key's presence, and the control API's fault and config bodies. Every problem is a 400
(or 401) OpenAIError worded like OpenAI's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from starlette.requests import Request

from devstack.fake_openai.errors import OpenAIError
from devstack.fake_openai.state import (
    DEFAULT_HANG_S,
    DEFAULT_RETRY_AFTER_S,
    DEFAULT_STREAM_ERROR_AFTER,
    FAULT_KINDS,
    Fault,
    FaultKind,
    JsonDict,
    is_non_negative_number,
)


@dataclass(frozen=True)
class ChatRequest:
    """The validated subset of a Chat Completions request body the fake cares about."""

    model: str
    messages: list[JsonDict]
    stream: bool
    include_usage: bool
    max_tokens: Any = None

    @property
    def last_user_text(self) -> str:
        """Text of the last ``user`` message; it drives the reply and fault matching."""
        return last_user_text(self.messages)


def content_text(content: object) -> str:
    """Flatten message content (string or list of ``{"type": "text"}`` parts) to text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)]
        return "\n".join(texts)
    return ""


def last_user_text(messages: object) -> str:
    """Return the text of the last message whose role is ``user`` ("" if none)."""
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def parse_chat_request(body: object) -> ChatRequest:
    """Validate a request body like OpenAI does, raising 400 ``OpenAIError`` on problems."""
    if not isinstance(body, dict):
        raise OpenAIError(400, "The request body must be a JSON object.", code="invalid_type")
    model = _parse_model(body)
    messages = _parse_messages(body)
    stream = _optional_bool(body, "stream")
    include_usage = _parse_include_usage(body)
    return ChatRequest(
        model=model, messages=messages, stream=stream, include_usage=include_usage, max_tokens=body.get("max_tokens")
    )


def _parse_model(body: JsonDict) -> str:
    """``model`` must be a non-empty string; any name is accepted and echoed back."""
    if "model" not in body:
        raise OpenAIError(400, "Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    model = body["model"]
    if not isinstance(model, str) or not model:
        raise OpenAIError(400, "'model' must be a non-empty string.", param="model", code="invalid_type")
    return model


def _parse_messages(body: JsonDict) -> list[JsonDict]:
    """``messages`` must be a non-empty list of objects with a string role."""
    if "messages" not in body:
        raise OpenAIError(
            400, "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter"
        )
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise OpenAIError(400, "'messages' must be a non-empty array.", param="messages", code="invalid_type")
    for index, message in enumerate(messages):
        _check_message(index, message)
    return cast(list[JsonDict], messages)


def _check_message(index: int, message: object) -> None:
    """Reject one malformed message, naming it the way OpenAI does (``messages.[i]``)."""
    param = f"messages.[{index}]"
    if not isinstance(message, dict):
        raise OpenAIError(400, f"Invalid type for '{param}': expected an object.", param=param, code="invalid_type")
    if not isinstance(message.get("role"), str):
        raise OpenAIError(400, f"Missing or invalid '{param}.role'.", param=f"{param}.role", code="invalid_type")
    content = message.get("content")
    if content is not None and not isinstance(content, (str, list)):
        raise OpenAIError(400, f"Invalid type for '{param}.content'.", param=f"{param}.content", code="invalid_type")


def _optional_bool(body: JsonDict, key: str) -> bool:
    """Read an optional boolean flag; ``null`` counts as false."""
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise OpenAIError(400, f"Invalid type for '{key}': expected a boolean.", param=key, code="invalid_type")
    return value


def _parse_include_usage(body: JsonDict) -> bool:
    """Read ``stream_options.include_usage`` (ask for a final usage chunk)."""
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise OpenAIError(
            400, "Invalid type for 'stream_options': expected an object.", param="stream_options", code="invalid_type"
        )
    return _optional_bool(options, "include_usage")


def has_bearer_token(request: Request) -> bool:
    """Any non-empty bearer token is accepted: we check presence, not validity."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def unauthorized() -> OpenAIError:
    """The 401 OpenAI returns when no API key is sent (SDK -> AuthenticationError)."""
    return OpenAIError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        code="invalid_api_key",
        outcome="unauthorized",
    )


async def read_json(request: Request) -> object:
    """Parse the body, mapping malformed JSON to OpenAI's 400."""
    try:
        return await request.json()
    except ValueError as exc:
        raise OpenAIError(400, "We could not parse the JSON body of your request.", code="invalid_json") from exc


def parse_faults(body: object) -> list[Fault]:
    """Parse ``{"faults": [...], "match": "..."}``; a per-fault ``match`` wins."""
    if not isinstance(body, dict):
        raise OpenAIError(400, "Body must be a JSON object.", param=None)
    raw_faults = body.get("faults")
    if not isinstance(raw_faults, list) or not raw_faults:
        raise OpenAIError(400, "'faults' must be a non-empty array.", param="faults")
    default_match = _optional_str(body, "match", None)
    return [parse_fault(item, default_match) for item in raw_faults]


def parse_fault(item: object, default_match: str | None) -> Fault:
    """Parse one fault description, validating its kind and numeric knobs."""
    if not isinstance(item, dict) or item.get("kind") not in FAULT_KINDS:
        raise OpenAIError(400, f"Each fault needs a 'kind' among {list(FAULT_KINDS)}.", param="faults.kind")
    return Fault(
        kind=cast(FaultKind, item["kind"]),
        match=_optional_str(item, "match", default_match),
        retry_after=non_negative(item, "retry_after", DEFAULT_RETRY_AFTER_S),
        seconds=non_negative(item, "seconds", DEFAULT_HANG_S),
        after_tokens=int(non_negative(item, "after_tokens", DEFAULT_STREAM_ERROR_AFTER)),
    )


def _optional_str(body: JsonDict, key: str, default: str | None) -> str | None:
    """Optional string field with a default; anything else is a 400."""
    value = body.get(key, default)
    if value is not None and not isinstance(value, str):
        raise OpenAIError(400, f"'{key}' must be a string.", param=key)
    return value


def non_negative(body: JsonDict, key: str, default: float) -> float:
    """Optional non-negative number field with a default; anything else is a 400."""
    value = body.get(key, default)
    if not is_non_negative_number(value):
        raise OpenAIError(400, f"'{key}' must be a non-negative number.", param=key)
    return float(value)
