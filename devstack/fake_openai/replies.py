"""What the fake answers: the deterministic completion, the same as SSE chunks, token usage,
and the error each injected fault produces."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from devstack.fake_openai.errors import OpenAIError
from devstack.fake_openai.requests import ChatRequest, content_text
from devstack.fake_openai.state import REPLY_PREFIX, Fault, JsonDict


def estimate_tokens(text: str) -> int:
    """Deterministic token estimate: ``len(text) // 4 + 1`` (roughly 4 chars/token)."""
    return len(text) // 4 + 1


def reply_text(chat: ChatRequest) -> str:
    """The deterministic answer: ``"Echo: "`` plus the last user message's text."""
    return REPLY_PREFIX + chat.last_user_text


def usage_for(chat: ChatRequest, reply: str) -> JsonDict:
    """Usage block: one estimate per prompt message plus one for the reply."""
    prompt = sum(estimate_tokens(content_text(m.get("content"))) for m in chat.messages)
    completion = estimate_tokens(reply)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_body(chat: ChatRequest, completion_id: str, created: int) -> JsonDict:
    """A full non-streaming ``chat.completion`` object."""
    reply = reply_text(chat)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": chat.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage_for(chat, reply),
        "system_fingerprint": None,
    }


def split_for_stream(text: str) -> list[str]:
    """Split text into word-sized pieces whose concatenation is exactly ``text``."""
    return [piece for piece in re.split(r"(?<=\s)(?=\S)", text) if piece]


def stream_chunks(chat: ChatRequest, completion_id: str, created: int) -> list[JsonDict]:
    """All ``chat.completion.chunk`` objects for a streamed reply, in order.

    Shape follows OpenAI: a role chunk, content deltas, a finish chunk, then (only
    with ``include_usage``) a usage chunk with empty ``choices``; when usage is
    requested every other chunk carries ``"usage": null``.
    """
    reply = reply_text(chat)
    deltas: list[tuple[JsonDict, str | None]] = [({"role": "assistant", "content": ""}, None)]
    deltas += [({"content": piece}, None) for piece in split_for_stream(reply)]
    deltas.append(({}, "stop"))
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": chat.model}
    chunks = [_chunk(base, delta, finish, chat.include_usage) for delta, finish in deltas]
    if chat.include_usage:
        chunks.append({**base, "choices": [], "usage": usage_for(chat, reply)})
    return chunks


def _chunk(base: JsonDict, delta: JsonDict, finish_reason: str | None, include_usage: bool) -> JsonDict:
    """One streaming chunk with a single choice."""
    chunk: JsonDict = {
        **base,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if include_usage:
        chunk["usage"] = None
    return chunk


def sse_frames(chunks: Sequence[JsonDict]) -> list[str]:
    """Encode chunks as Server-Sent Events, terminated by ``data: [DONE]``."""
    frames = [f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n" for chunk in chunks]
    frames.append("data: [DONE]\n\n")
    return frames


def fault_error(fault: Fault, model: str) -> OpenAIError:
    """The error response an injected fault produces (``hang`` never gets here)."""
    if fault.kind == "rate_limit":
        return _rate_limit_error(fault.retry_after, model)
    if fault.kind == "server_error":
        return OpenAIError(
            500,
            "The server had an error while processing your request. Sorry about that!",
            error_type="server_error",
            outcome="server_error",
        )
    if fault.kind == "insufficient_quota":
        return OpenAIError(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            error_type="insufficient_quota",
            code="insufficient_quota",
            outcome="insufficient_quota",
        )
    return OpenAIError(400, "Injected bad request (fake OpenAI fault).", outcome="bad_request")


def _rate_limit_error(retry_after: float, model: str) -> OpenAIError:
    """429 with both ``Retry-After`` (seconds) and ``retry-after-ms``, like OpenAI."""
    seconds = _format_seconds(retry_after)
    return OpenAIError(
        429,
        f"Rate limit reached for {model}. Please try again in {seconds}s.",
        error_type="rate_limit_exceeded",
        code="rate_limit_exceeded",
        outcome="rate_limit",
        headers={"retry-after": seconds, "retry-after-ms": str(round(retry_after * 1000))},
    )


def _format_seconds(seconds: float) -> str:
    """Render ``1.0`` as ``"1"`` and ``0.1`` as ``"0.1"`` (what clients parse best)."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))
