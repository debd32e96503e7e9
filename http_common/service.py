"""The one typed way a door (or gunicorn's hooks) reaches the process's ChatService."""

from __future__ import annotations

from flask import Flask, current_app

from chat.service import ChatService

_EXTENSION = "chat_service"


def install_chat_service(app: Flask, service: ChatService) -> None:
    app.extensions[_EXTENSION] = service


def chat_service(app: Flask | None = None) -> ChatService:
    """The service of `app`, or of the app handling the current request."""
    service: ChatService = (app or current_app).extensions[_EXTENSION]
    return service
