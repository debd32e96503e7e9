"""The whole local stack in one object: Postgres, the Supabase gateway with the pg_net stand-in,
the fake OpenAI server and the reference chat page (web/, where Node can install
supabase-js). `make run` starts it through `python -m devstack`; the tests start
one per test session on free ports."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from devstack.chat_page import create_chat_page
from devstack.fake_openai import create_fake_openai
from devstack.gateway.app import create_gateway
from devstack.keys import JwtKeys
from devstack.migrate import prepare_database
from devstack.pgnet import PgNetWorker
from devstack.postgres import LocalPostgres
from devstack.private_files import read_private, write_private
from devstack.serving import RunningServer, serve_in_thread
from devstack.web_packages import install_web_packages


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: whsec_ + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class StackConfig:
    state_dir: Path
    host: str = "127.0.0.1"
    api_port: int = 54321
    db_port: int = 54322
    model_port: int = 54330
    web_port: int | None = None  # the chat page's port (`make run`: 54380); None: no page
    database_url: str | None = None  # an existing server instead of the embedded one
    trust_local_logins: bool = False  # that server lets any role log in without a password (as ours do)
    webhook_url: str = "http://127.0.0.1:8000/webhooks/messages"
    token_lifetime_seconds: int = 3600


@dataclass
class LocalStack:
    config: StackConfig
    postgres: LocalPostgres | None = None
    gateway: RunningServer | None = None
    fake_model: RunningServer | None = None
    chat_page: RunningServer | None = None
    chat_page_missing: str = "not started"  # why there is no chat page, when there is none
    pgnet: PgNetWorker | None = None
    database_url: str = ""
    keys: JwtKeys | None = None
    webhook_secret: str = ""
    _servers: list[RunningServer] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        assert self.gateway is not None
        return self.gateway.url

    @property
    def realtime_url(self) -> str:
        """What supabase-js derives from the API URL: ws://host:port/realtime/v1."""
        return self.api_url.replace("http://", "ws://", 1) + "/realtime/v1"

    @property
    def model_url(self) -> str:
        assert self.fake_model is not None
        return f"{self.fake_model.url}/v1"

    def start(self) -> LocalStack:
        """Start everything, or nothing: a failure part-way stops what already started."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> LocalStack:
        state = self.config.state_dir
        state.mkdir(parents=True, exist_ok=True)
        if self.config.database_url:
            self.database_url = self.config.database_url
        else:
            self.postgres = LocalPostgres(state / "postgres" / "data", self.config.db_port, self.config.host)
            self.database_url = self.postgres.start()
        prepare_database(self.database_url)
        self.webhook_secret = _load_or_create_secret(state / "webhook-secret")
        self.configure_webhook(self.config.webhook_url)
        issuer = f"http://{self.config.host}:{self.config.api_port}/auth/v1"
        self.keys = JwtKeys.load_or_create(state, issuer)
        self.pgnet = PgNetWorker(self.database_url)
        gateway_app = create_gateway(
            self.database_url,
            self.keys,
            login_as_authenticator=self.postgres is not None or self.config.trust_local_logins,
            token_lifetime_seconds=self.config.token_lifetime_seconds,
            pgnet=self.pgnet,
        )
        self.gateway = serve_in_thread(gateway_app, self.config.host, self.config.api_port)
        self.fake_model = serve_in_thread(create_fake_openai(), self.config.host, self.config.model_port)
        if self.config.web_port is not None:
            self.start_chat_page(self.config.web_port)
        return self

    def start_chat_page(self, port: int) -> str | None:
        """Serve web/ against this stack; its URL, or None (and `chat_page_missing` says why):
        the page is optional, and without Node the rest of the stack runs anyway."""
        assert self.keys is not None
        packages = install_web_packages()
        if packages.missing is not None:
            self.chat_page_missing = packages.missing
            return None
        page = create_chat_page(packages.web_dir, packages.vendored, self.api_url, self.keys.api_key("anon"))
        self.chat_page = serve_in_thread(page, self.config.host, port)
        return self.chat_page.url

    @property
    def chat_page_url(self) -> str | None:
        return self.chat_page.url if self.chat_page else None

    def configure_webhook(self, url: str) -> None:
        """The one call a real project needs too (see the README)."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute("select private.configure_message_webhook(%s, %s)", (url, self.webhook_secret))

    def stop(self) -> None:
        for server in (self.chat_page, self.fake_model, self.gateway):
            if server is not None:
                server.stop()
        if self.postgres is not None:
            self.postgres.stop()

    def service_environment(self) -> dict[str, str]:
        """What the service needs to talk to this stack, as environment variables."""
        assert self.keys is not None
        return {
            "SUPABASE_URL": self.api_url,
            "SUPABASE_ANON_KEY": self.keys.api_key("anon"),
            "SUPABASE_SERVICE_ROLE_KEY": self.keys.api_key("service_role"),
            "SUPABASE_JWT_SECRET": self.keys.legacy_secret,
            "WEBHOOK_SECRET": self.webhook_secret,
            "OPENAI_BASE_URL": self.model_url,
            "OPENAI_API_KEY": "fake-key-for-the-local-model",
            "DATABASE_URL": self.database_url,
        }

    def write_env_file(self, path: Path) -> None:
        """KEY='value' lines: `source` reads them, and so does `honcho start -e` (which ignores
        `export`). The service-role key and the secrets are in it, so it is the owner's only."""
        write_private(path, "".join(f"{name}='{value}'\n" for name, value in self.service_environment().items()))

    def status_text(self) -> str:
        """What `supabase status` prints, for the same stack."""
        assert self.keys is not None
        return "\n".join(
            [
                f"         API URL: {self.api_url}",
                f"    Realtime URL: {self.realtime_url}",
                f"          DB URL: {self.database_url}",
                f"        JWKS URL: {self.api_url}/auth/v1/.well-known/jwks.json",
                f"      JWT secret: {self.keys.legacy_secret}",
                f"        anon key: {self.keys.api_key('anon')}",
                f"service_role key: {self.keys.api_key('service_role')}",
                f"     Webhook URL: {self.config.webhook_url}",
                f"  Fake model URL: {self.model_url}",
                f"   Chat page URL: {self.chat_page_url or 'none: ' + self.chat_page_missing}",
            ]
        )


def _load_or_create_secret(path: Path) -> str:
    if path.exists():
        return read_private(path).strip()
    secret = new_webhook_secret()
    write_private(path, secret)
    return secret
