"""Realtime Broadcast (chat.ports.ReplyBroadcaster) through Realtime's REST endpoint,
`POST /realtime/v1/api/broadcast`, as the service role: many messages, for many replies and
channels, in one request, so a process streaming 64 replies sends one request per interval."""

from __future__ import annotations

import httpx

from chat.errors import BroadcastFailed
from chat.ports import Broadcast


class RealtimeBroadcaster:
    def __init__(self, supabase_url: str, service_role_key: str, http: httpx.Client) -> None:
        self.url = f"{supabase_url.rstrip('/')}/realtime/v1/api/broadcast"
        self.headers = {"apikey": service_role_key, "Authorization": f"Bearer {service_role_key}"}
        self.http = http

    def send(self, messages: list[Broadcast]) -> None:
        body = {
            "messages": [
                {"topic": message.topic, "event": message.event, "payload": message.payload, "private": True}
                for message in messages
            ]
        }
        try:
            response = self.http.post(self.url, json=body, headers=self.headers)
        except httpx.HTTPError as error:
            raise BroadcastFailed(f"Realtime unreachable: {type(error).__name__}") from error
        if response.status_code >= 300:
            raise BroadcastFailed(f"Realtime refused the broadcast ({response.status_code})")
