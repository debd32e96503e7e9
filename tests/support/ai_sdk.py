"""The Vercel AI SDK as a frontend runs it: its Chat (what useChat drives) and DefaultChatTransport
under Node (tests/support/ai_sdk_js/chat.mjs), pointed at the service with `api` at /api/chat and
the conversation as the chat id. One scenario per run; the run's report says what the page held
(status, error, messages), every UI message chunk parsed, and every request made."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.users import SignedUpUser

AI_SDK_DIR = Path(__file__).resolve().parent / "ai_sdk_js"
_DEPENDENCIES = json.loads((AI_SDK_DIR / "package.json").read_text())["dependencies"]
PINNED_AI = _DEPENDENCIES["ai"]
# The older majors, installed under aliases: package name -> version.
OLDER_AI = {alias: spec.removeprefix("npm:ai@") for alias, spec in _DEPENDENCIES.items() if alias != "ai"}
Report = dict[str, Any]
# schemathesis, for the AI SDK's route: JSON Schema cannot say "the last message is the user's, with
# text", so a body the document allows may still be refused there (400, saying why).
SDK_BODY_IS_READ_BEYOND_ITS_SCHEMA = {
    "include-operation-id": "sendAiSdkMessage",
    "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "409", "429", "5xx"]}},
}


def run_chat(
    node: str, service_url: str, user: SignedUpUser, conversation_id: str, scenario: str, *,
    text: str = "", package: str = "ai", messages: list[dict[str, Any]] | None = None, deadline_seconds: float = 60,
) -> Report:
    plan = {"package": package, "api": f"{service_url}/api/chat", "token": user.access_token, "chatId": conversation_id,
            "scenario": scenario, "text": text, "messages": messages or []}
    try:
        run = subprocess.run([node, "chat.mjs", json.dumps(plan)], cwd=AI_SDK_DIR, capture_output=True, text=True,
                             timeout=deadline_seconds, check=False)
    except subprocess.TimeoutExpired as timeout:
        raise AssertionError(f"the {scenario} scenario ran over {deadline_seconds} s: {timeout.stderr!r}") from None
    assert run.returncode == 0, f"node exited {run.returncode}: {run.stderr[-3000:]}"
    report: Report = json.loads(run.stdout.splitlines()[-1])
    return report


def parse_with_the_sdk(node: str, body: str, package: str = "ai") -> Report:
    """What the SDK's own transport parses from a response body: {chunks, error}."""
    run = subprocess.run([node, "chat.mjs", json.dumps({"package": package, "scenario": "parse", "body": body})],
                         cwd=AI_SDK_DIR, capture_output=True, text=True, timeout=30, check=False)
    assert run.returncode == 0, f"node exited {run.returncode}: {run.stderr[-3000:]}"
    report: Report = json.loads(run.stdout.splitlines()[-1])
    return report


def chunk_types(report: Report) -> list[str]:
    """The chunk types in order, a run of text-delta counted once (their number depends on pacing)."""
    types: list[str] = []
    for chunk in report["chunks"]:
        if not (chunk["type"] == "text-delta" and types and types[-1] == "text-delta"):
            types.append(chunk["type"])
    return types


def assistant_text(report: Report) -> str:
    replies = [message for message in report["messages"] if message["role"] == "assistant"]
    assert len(replies) == 1, report["messages"]
    return str(replies[0]["text"])


def ui_parts(lines: Any) -> list[Any]:
    """The data of each Server-Sent Event of a UI message stream, JSON-decoded ("[DONE]" kept as
    it is); comment lines such as the heartbeat as ("comment", text)."""
    parts: list[Any] = []
    for line in lines:
        if line.startswith(":"):
            parts.append(("comment", line[1:].strip()))
        elif line.startswith("data: "):
            data = line[len("data: ") :]
            parts.append(data if data == "[DONE]" else json.loads(data))
    return parts


def sdk_body(text: str, chat_id: str | None = None, message_id: str = "msg-1", **fields: Any) -> dict[str, Any]:
    """A body as DefaultChatTransport sends it after sendMessage({text})."""
    body: dict[str, Any] = {"messages": [{"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}],
                            "trigger": "submit-message", **fields}
    if chat_id is not None:
        body["id"] = chat_id
    return body
