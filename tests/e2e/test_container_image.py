"""The Dockerfile built into an image from a clean checkout and run as a platform runs it: its own
CMD (the Procfile's command), as the non-root user, against the local stack. Ready, a signed
webhook answered end to end, POST /api/chat answered, a SIGTERM drain that loses nothing, and
nothing in the image that production must not carry.

Needs Docker, Podman or Buildah (installed with apt when the tests run as root, as on CI); skips
elsewhere, fails on CI. `-m "not container"` leaves it out locally.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import psycopg
import pytest
from supabase import ClientOptions, create_client

from devstack.service_process import procfile_command
from devstack.serving import free_port
from devstack.stack import LocalStack
from tests.support.container_service import CACHE_DIR, BuiltImage, ContainerService, built_image
from tests.support.deliveries import deliver, message_event, message_state, replies_to
from tests.support.polling import wait_until
from tests.support.stack import FakeModelControl
from tests.support.users import SignedUpUser, sign_up

pytestmark = [pytest.mark.container, pytest.mark.timeout(900)]

PROBE = Path(__file__).resolve().parents[1] / "support" / "image_probe.py"
SECRET_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD)")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltImage]:
    with built_image(tmp_path_factory.mktemp("image-context")) as built:
        yield built


def start_container(image: BuiltImage, stack: LocalStack, state_dir: Path, **overrides: str) -> ContainerService:
    """The image as deployed: its own defaults (APP_ENV=production, 2 workers x 256 threads) plus
    what a platform's secrets would give it, pointing at the local stack. DATABASE_URL is the
    stack's own; the service never reads it, so the image does not get it."""
    deployed = {name: value for name, value in stack.service_environment().items() if name != "DATABASE_URL"}
    env = {**deployed, "CORS_ORIGINS": "http://localhost:3000", **overrides}
    port = free_port()
    container = ContainerService(image, env, port, state_dir / f"container-{port}.log")
    try:
        return container.start()
    except BaseException:
        container.stop()
        raise


@pytest.fixture(scope="module")
def container(
    image: BuiltImage, stack: LocalStack, state_dir: Path, request: pytest.FixtureRequest
) -> Iterator[ContainerService]:
    running = start_container(image, stack, state_dir)
    yield running
    assert running.stop() == 0, f"the container did not exit cleanly on SIGTERM; see {running.log_path}"
    _report_figures(image, running, request)


def _report_figures(image: BuiltImage, running: ContainerService, request: pytest.FixtureRequest) -> None:
    """The figures docs/deployment.md quotes, printed and kept in the cache folder; measured, not asserted."""
    figures = {
        "builder": image.builder.name,
        "base": image.base or "Dockerfile default",
        "image_bytes": image.builder.image_size(image.tag),
        "base_bytes": image.builder.image_size(image.base) if image.base else None,
        "base_seconds": round(image.base_seconds, 1),
        "build_seconds": round(image.build_seconds, 1),
        "seconds_to_create_container": round(running.seconds_to_create or 0, 2),
        "seconds_to_ready": round(running.seconds_to_ready or 0, 2),
    }
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    (CACHE_DIR / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\ncontainer image: {json.dumps(figures)}")


def _webhook_to(stack: LocalStack, container: ContainerService) -> None:
    stack.configure_webhook(f"{container.url}/webhooks/messages")


def _insert_as(user: SignedUpUser, stack: LocalStack, content: str) -> tuple[str, str]:
    """A conversation and a message inserted through the gateway as the user, as a frontend does."""
    assert stack.keys is not None
    client = create_client(stack.api_url, stack.keys.api_key("anon"),
                           options=ClientOptions(auto_refresh_token=False, persist_session=False))
    client.postgrest.auth(user.access_token)
    conversation = cast(dict[str, Any], client.table("conversations").insert({"title": "image"}).execute().data[0])
    message = cast(dict[str, Any], client.table("messages").insert(
        {"conversation_id": conversation["id"], "content": content}).execute().data[0])
    return str(message["id"]), str(conversation["id"])


# --- how it starts ------------------------------------------------------------------------------


def test_image_runs_the_procfile_command_as_the_non_root_user(image: BuiltImage, container: ContainerService) -> None:
    config = image.builder.image_config(image.tag)
    assert config["Cmd"] == procfile_command(), "the image must start exactly as the Procfile says"
    assert not config.get("Entrypoint"), "an ENTRYPOINT would wrap the Procfile command"
    assert config["User"] == "app"
    assert config["WorkingDir"] == "/app"
    assert config.get("StopSignal") == "SIGTERM"
    uid = re.search(r"^Uid:\s+(\d+)", container.main_process_status(), flags=re.MULTILINE)
    assert uid is not None and uid.group(1) != "0", "the service's main process runs as root"


def test_readyz_and_the_images_own_healthcheck_answer(image: BuiltImage, container: ContainerService) -> None:
    response = httpx.get(f"{container.url}/readyz", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "model": "ok", "realtime": "ok"}}

    test = image.builder.image_config(image.tag)["Healthcheck"]["Test"]
    assert test[0] == "CMD-SHELL", f"unexpected HEALTHCHECK form {test}"
    healthy = container.exec(["/bin/sh", "-c", test[1]])
    assert healthy.returncode == 0, f"the image's HEALTHCHECK failed against the running service: {healthy.stderr}"
    # The same check against a port nothing listens on must fail, or it proves nothing.
    unhealthy = container.exec(["/bin/sh", "-c", test[1]], PORT=str(free_port()))
    assert unhealthy.returncode != 0


# --- what it answers ----------------------------------------------------------------------------


def test_a_message_is_answered_through_the_signed_webhook(
    container: ContainerService, stack: LocalStack, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    _webhook_to(stack, container)
    text = f"through the image {uuid.uuid4()}"
    message_id, _ = _insert_as(sign_up(stack), stack, text)

    [(_, reply)] = wait_until(lambda: replies_to(db, message_id), deadline_seconds=15)
    assert reply == f"Echo: {text}"
    assert message_state(db, message_id) == ("done", None, 1)
    deliveries = wait_until(lambda: db.execute("select status_code from net._http_response").fetchall())
    assert deliveries == [(202,)], "pg_net's signed delivery must be accepted by the image's service"


def test_a_webhook_signed_with_another_secret_is_refused(container: ContainerService) -> None:
    message_id, conversation_id = str(uuid.uuid4()), str(uuid.uuid4())
    forged = deliver(container.url, "whsec_" + "A" * 43 + "=", message_event(message_id, conversation_id))
    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "invalid_signature"


def test_post_api_chat_is_answered(container: ContainerService, stack: LocalStack, fake_model: FakeModelControl) -> None:
    _webhook_to(stack, container)
    with sign_up(stack).api(container.url) as api:
        conversation = api.post("/api/conversations", json={"title": "image"}).json()["id"]
        response = api.post(f"/api/chat/{conversation}", json={"message": "hello, image"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["response"] == "Echo: hello, image"
    assert body["conversation_id"] == conversation


# --- how it stops -------------------------------------------------------------------------------


def test_sigterm_drains_the_generations_in_flight_and_loses_nothing(
    image: BuiltImage, stack: LocalStack, state_dir: Path, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    by_webhook, by_api = f"drain webhook {uuid.uuid4()}", f"drain api {uuid.uuid4()}"
    for text in (by_webhook, by_api):
        fake_model.queue_faults({"kind": "hang", "seconds": 1.5}, match=text)
    leaving = start_container(image, stack, state_dir, GRACEFUL_TIMEOUT="15")
    try:
        _webhook_to(stack, leaving)
        user = sign_up(stack)
        webhook_message, _ = _insert_as(user, stack, by_webhook)
        api_answer: dict[str, Any] = {}
        with user.api(leaving.url) as api:
            conversation = api.post("/api/conversations", json={}).json()["id"]
            caller = threading.Thread(target=lambda: api_answer.update(
                response=api.post(f"/api/chat/{conversation}", json={"message": by_api})))
            caller.start()
            wait_until(lambda: fake_model.requests(match=by_webhook) and fake_model.requests(match=by_api))
            signalled = time.monotonic()
            leaving.send_signal("SIGTERM")
            caller.join(timeout=20)
        assert leaving.process is not None
        assert leaving.process.wait(timeout=20) == 0, f"not a clean drain; see {leaving.log_path}"
        assert time.monotonic() - signalled < 15, "the drain waited for the grace period instead of the work"
    finally:
        leaving.stop()

    response = api_answer["response"]
    assert response.status_code == 200, response.text
    assert response.json()["response"] == f"Echo: {by_api}"
    assert [content for _, content in replies_to(db, webhook_message)] == [f"Echo: {by_webhook}"]
    assert message_state(db, webhook_message)[0] == "done"
    api_message = response.json()["message_id"]
    assert len(replies_to(db, api_message)) == 1


# --- what it holds ------------------------------------------------------------------------------


def test_image_holds_no_compiler_tests_devstack_or_secrets(image: BuiltImage) -> None:
    probe = image.builder.run_once(image.tag, ["python", "-c", PROBE.read_text()])
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    for unwanted in ("tests", "devstack", "bench", "supabase", ".git", ".env", ".devstack", "requirements-dev.txt"):
        assert unwanted not in found["app_entries"], f"/app holds {unwanted}"
    assert found["compilers"] == [], "a compiler reached the runtime image"
    assert found["test_files"] == []
    assert found["dev_modules"] == [], "development-only code is importable in the image"
    assert found["secret_files"] == []
    assert found["secret_text"] == []
    assert found["app_not_root_owned"] == [], "the service's user must not be able to change its code"
    env_names = [entry.split("=", 1)[0] for entry in image.builder.image_config(image.tag)["Env"]]
    assert not [name for name in env_names if SECRET_NAME.search(name)], f"a secret is baked into the image: {env_names}"
