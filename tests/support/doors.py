"""Both doors in process on fakes (create_app and Flask's test client), and requests as a
signed-in caller: what the door tables of tests/unit share."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from flask import Flask
from flask.testing import FlaskClient

from chat.caller import Caller
from http_common.service import chat_service
from tests.support.fakes import InMemoryCallerStore
from tests.support.in_process import LEGACY_JWT_SECRET, SUPABASE_URL, FakeChat, fake_chat, unit_settings

USER_ID = str(uuid.uuid4())


def token(user_id: str = USER_ID, **changes: Any) -> str:
    now = int(time.time())
    claims = {"sub": user_id, "role": "authenticated", "aud": "authenticated", "iss": f"{SUPABASE_URL}/auth/v1",
              "exp": now + 600, **changes}
    return jwt.encode(claims, LEGACY_JWT_SECRET, algorithm="HS256")


class Doors:
    """The app on fakes, one conversation of the caller's, and requests as the caller."""

    def __init__(self, **settings: Any) -> None:
        self.chat: FakeChat = fake_chat(unit_settings(**settings))
        self.app: Flask = self.chat.app(unit_settings(**settings))
        self.client: FlaskClient = self.app.test_client()
        self.conversation_id = self.chat.database.add_conversation(USER_ID)
        self.auth = {"Authorization": f"Bearer {token()}"}

    def callers_store(self) -> InMemoryCallerStore:
        store = chat_service(self.app).caller_store(Caller(USER_ID, token()))
        assert isinstance(store, InMemoryCallerStore)
        return store


def error(response: Any) -> tuple[int, str]:
    return response.status_code, response.get_json()["error"]["code"]
