"""The reference point: the original design's direct call, rebuilt minimal but realistic.

One Flask endpoint does everything inside the request: read the conversation's recent history
through supabase-py (service role), ask the model through the openai SDK, answer, and save the
user message and the reply from a background thread. No webhook, no claim, no waiting on the
database: the shortest path a reply can take, which is what the service's POST /api/chat is
compared with. It is served by gunicorn with the service's own gunicorn.conf.py and environment,
so the two differ in design only:

    gunicorn --config gunicorn.conf.py bench.baseline_app:app

The bearer token is not verified (the comparison does not require it), which only makes the
baseline faster, so the ratio errs in the baseline's favour. Saved user messages are written as
already answered (status done), as the original design stored them, so the re-drive sweep
leaves them alone.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any, cast

import httpx
import openai
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from postgrest.types import ReturnMethod
from supabase import Client, ClientOptions, create_client

from chat.logging import configure_logging
from chat.service import ChatService
from http_common.service import install_chat_service

HISTORY_LIMIT = int(os.environ.get("CONTEXT_MAX_MESSAGES", "200"))  # the service's own limit, for a like-for-like read


class NoBackgroundWork:
    """gunicorn.conf.py's hooks start and stop the service's background work through
    ``http_common.service.chat_service``; the baseline has none, so it answers them with nothing."""

    def start(self) -> None:
        """Nothing runs in the background until a request saves its messages."""

    def begin_shutdown(self) -> None:
        """No webhooks to refuse."""

    def finish_shutdown(self, drain_seconds: float) -> list[str]:
        """No claims to hand back."""
        return []


def supabase_client() -> Client:
    """One service-role client per process, with a connection pool as large as the service's."""
    http = httpx.Client(timeout=10.0, limits=httpx.Limits(max_connections=256 + 128, max_keepalive_connections=64))
    return create_client(
        os.environ["SUPABASE_URL"],
        os.environ["SUPABASE_SERVICE_ROLE_KEY"],
        options=ClientOptions(auto_refresh_token=False, persist_session=False, httpx_client=http),
    )


def create_app() -> Flask:
    configure_logging("json", os.environ.get("LOG_LEVEL", "INFO"))  # the same access log filter as the service
    app = Flask(__name__)
    install_chat_service(app, cast(ChatService, NoBackgroundWork()))
    supabase = supabase_client()
    model = openai.OpenAI(
        api_key=os.environ["OPENAI_API_KEY"],
        base_url=os.environ.get("OPENAI_BASE_URL") or None,
        timeout=float(os.environ.get("OPENAI_TIMEOUT_SECONDS", "45")),
        max_retries=0,  # the service's SDK retries are off too (it retries with tenacity on failure only)
    )
    model_name = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")

    def save(conversation_id: str, user_id: str, message: str, reply: str) -> None:
        message_id = str(uuid.uuid4())
        common = {"conversation_id": conversation_id, "user_id": user_id, "status": "done"}
        supabase.table("messages").insert(
            [  # one request, one statement: the reply's reply_to is checked at the statement's end
                {**common, "id": message_id, "role": "user", "content": message, "reply_to": None, "model": None},
                {**common, "id": str(uuid.uuid4()), "role": "assistant", "content": reply, "reply_to": message_id,
                 "model": model_name},
            ],
            returning=ReturnMethod.minimal,
        ).execute()

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return jsonify(status="ok")

    @app.post("/baseline/chat/<conversation_id>")
    def chat(conversation_id: str) -> ResponseReturnValue:
        body: dict[str, Any] = request.get_json(force=True)
        message, user_id = str(body["message"]), str(body["user_id"])
        rows: list[dict[str, Any]] = (
            supabase.table("messages")
            .select("role, content")
            .eq("conversation_id", conversation_id)
            .order("created_at", desc=True)
            .limit(HISTORY_LIMIT)
            .execute()
            .data  # type: ignore[assignment]
        )
        history = [{"role": row["role"], "content": row["content"]} for row in reversed(rows)]
        completion = model.chat.completions.create(
            model=model_name,
            messages=[*history, {"role": "user", "content": message}],  # type: ignore[list-item]
        )
        reply = completion.choices[0].message.content or ""
        threading.Thread(target=save, args=(conversation_id, user_id, message, reply), daemon=True).start()
        return jsonify(response=reply, conversation_id=conversation_id)

    return app


app = create_app()
