"""The application factory: the one place where the doors and the domain are wired together."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from api.health import health


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    if config:
        app.config.update(config)
    app.register_blueprint(health)
    return app
