"""gunicorn's access log as structlog events, so a deploy's logs are one JSON stream. The path is
logged without the query string, and nothing of the body or headers but the request id."""

from __future__ import annotations

from typing import Any

import structlog
from gunicorn.glogging import Logger


class StructlogGunicornLogger(Logger):
    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.cfg.accesslog:
            return
        request_id = dict(resp.headers).get("X-Request-ID") if resp.headers else None
        structlog.get_logger("gunicorn.access").info(
            "request",
            method=environ.get("REQUEST_METHOD"),
            path=environ.get("PATH_INFO"),
            status=resp.status_code,
            duration_ms=round(request_time.total_seconds() * 1000, 1),
            request_id=request_id,
        )
