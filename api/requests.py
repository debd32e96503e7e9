"""What every REST route needs from its request: the authenticated caller, the JSON body and the
query string read into a schema, each failing with the error a caller can act on."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from flask import Flask, current_app, g, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import BadRequest, NotFound, UnsupportedMediaType

from api.auth import TokenVerifier, bearer_token
from chat.caller import Caller
from http_common.request_body import read_body

Schema = TypeVar("Schema", bound=BaseModel)
P = ParamSpec("P")
R = TypeVar("R")
_EXTENSION = "rest_door"


@dataclass(frozen=True)
class RestDoor:
    """What the REST door is built with, once, by the app factory."""

    token_verifier: TokenVerifier
    max_body_bytes: int
    offered_models: tuple[str, ...] = ()  # the model allowlist, as /openapi.json describes it


def install_rest_door(app: Flask, door: RestDoor) -> None:
    app.extensions[_EXTENSION] = door


def rest_door() -> RestDoor:
    door: RestDoor = current_app.extensions[_EXTENSION]
    return door


def authenticated(route: Callable[P, R]) -> Callable[P, R]:
    """Verify the bearer token before the route runs and put the caller on `flask.g`; a missing
    or bad token is InvalidToken (401) and the route never runs."""

    @functools.wraps(route)
    def verified(*args: P.args, **kwargs: P.kwargs) -> R:
        g.caller = rest_door().token_verifier.verify(bearer_token())
        return route(*args, **kwargs)

    return verified


def current_caller() -> Caller:
    """The caller `@authenticated` verified for this request."""
    caller: Caller = g.caller
    return caller


def json_body(schema: type[Schema]) -> Schema:
    return validated(schema, json_object())


def json_object() -> dict[str, Any]:
    """The body as a JSON object, before any schema reads it."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("Send the body as JSON with 'Content-Type: application/json'.")
    raw = read_body(rest_door().max_body_bytes)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting too deep to parse
        raise BadRequest("The body is not valid JSON (or nests too deeply).") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


def query(schema: type[Schema]) -> Schema:
    return validated(schema, request.args.to_dict())


def validated(schema: type[Schema], data: Mapping[str, object]) -> Schema:
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'body'}: {item['msg']}" for item in error.errors()
        )
        raise BadRequest(f"Invalid request: {problems}.") from None


def conversation_id_from_path(value: str) -> str:
    """An id that is not a UUID names no conversation: 404, like any other unknown one."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound("No such conversation.") from None


def message_id_from_path(value: str) -> str:
    """An id that is not a UUID names no message: 404, like any other unknown one."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound("No such message.") from None
