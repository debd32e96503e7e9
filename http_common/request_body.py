"""Reading a request body under a size limit, the same way for either door.

Werkzeug enforces `max_content_length` itself only when the client sends Content-Length; a
chunked body is cut at the limit silently, which a JSON parser then calls malformed (400). One
byte more than the limit is read, so an oversize body is a 413 however it was sent.
"""

from __future__ import annotations

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

TOO_LARGE = "The body is larger than the {limit} bytes this endpoint accepts."


def read_body(max_bytes: int) -> bytes:
    request.max_content_length = max_bytes + 1
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise RequestEntityTooLarge(TOO_LARGE.format(limit=max_bytes)) from None
    if len(body) > max_bytes:
        raise RequestEntityTooLarge(TOO_LARGE.format(limit=max_bytes))
    return body
