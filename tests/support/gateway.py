"""A gateway of its own (the Auth, REST and Realtime stand-ins) that a test can restart: every
Realtime socket drops, as when Supabase's Realtime restarts, and clients find it again on the
same port."""

from __future__ import annotations

from devstack.gateway.app import create_gateway
from devstack.keys import JwtKeys
from devstack.serving import RunningServer, free_port, serve_in_thread


class RestartableGateway:
    """A gateway of its own on a fixed port, over the session's database, that a test can restart."""

    def __init__(self, database_url: str, keys: JwtKeys) -> None:
        self.database_url = database_url
        self.keys = keys
        self.port = free_port()
        self.server: RunningServer = self._serve()

    def _serve(self) -> RunningServer:
        app = create_gateway(self.database_url, self.keys, login_as_authenticator=True)
        return serve_in_thread(app, "127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return self.server.url

    def restart(self) -> None:
        self.server.stop()
        self.server = self._serve()

    def stop(self) -> None:
        self.server.stop()
