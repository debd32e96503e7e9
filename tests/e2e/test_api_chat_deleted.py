"""POST /api/chat when the conversation is deleted while its reply is being generated: the
caller is told the truth (404, the conversation is gone), not "will be answered" (504)."""

from __future__ import annotations

import threading

import httpx
import psycopg

from devstack.service_process import ServiceProcess
from tests.support.polling import wait_until
from tests.support.stack import FakeModelControl
from tests.support.users import SignedUpUser


def test_deleted_mid_reply_is_a_404_not_a_504(
    live_service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    fake_model.set_latency(1000)
    api = alice.api(live_service.url)
    conversation = api.post("/api/conversations", json={}).json()["id"]
    answer: list[httpx.Response] = []
    sender = threading.Thread(
        target=lambda: answer.append(alice.api(live_service.url).post(f"/api/chat/{conversation}",
                                                                      json={"message": "doomed"}))
    )
    sender.start()
    wait_until(lambda: db.execute("select 1 from public.messages where status = 'processing'").fetchone())
    assert api.delete(f"/api/conversations/{conversation}").status_code == 204
    sender.join(timeout=20)

    [response] = answer
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"
    assert db.execute("select count(*) from public.messages").fetchone()[0] == 0
