"""Users and conversations for the virtual users, made the way a frontend makes them: sign-up
through the auth gateway, conversations through POST /api/conversations."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from bench.harness import BenchEnvironment, user_id_of

CONVERSATIONS_PER_USER = 25  # several users, so no one user's rows dominate; no rate limit in the bench


@dataclass(frozen=True)
class VirtualUser:
    """One simulated caller: a signed-in user's token and a conversation of their own."""

    token: str
    user_id: str
    conversation_id: str

    def to_job(self) -> dict[str, Any]:
        return asdict(self)


def create_virtual_users(environment: BenchEnvironment, count: int, title: str) -> list[VirtualUser]:
    """`count` conversations spread over ceil(count / 25) freshly signed-up users."""
    tokens = [environment.sign_up() for _ in range(-(-count // CONVERSATIONS_PER_USER))]
    owners = [tokens[i // CONVERSATIONS_PER_USER] for i in range(count)]
    with httpx.Client(base_url=environment.service.url, timeout=30) as api, ThreadPoolExecutor(8) as pool:

        def create(token: str) -> VirtualUser:
            response = api.post(
                "/api/conversations", json={"title": title}, headers={"Authorization": f"Bearer {token}"}
            )
            response.raise_for_status()
            return VirtualUser(token, user_id_of(token), str(response.json()["id"]))

        return list(pool.map(create, owners))
