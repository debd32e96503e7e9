"""Reading a request's JSON body and query string into a schema, with the error a caller can act on."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import BadRequest, NotFound, UnsupportedMediaType

from chat.settings import Settings
from server.request_body import read_body

Schema = TypeVar("Schema", bound=BaseModel)


def json_body(schema: type[Schema], settings: Settings) -> Schema:
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("Send the body as JSON with 'Content-Type: application/json'.")
    raw = read_body(settings.api_max_body_bytes)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting too deep to parse
        raise BadRequest("The body is not valid JSON (or nests too deeply).") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return validated(schema, body)


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
