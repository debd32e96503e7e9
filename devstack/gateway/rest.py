"""PostgREST 12's REST surface for the devstack gateway, mounted at /rest/v1.

PostgREST cannot run on these machines, so this speaks its protocol for what supabase-py and
supabase-js send: reads with filters, inserts/upserts, updates, deletes and /rpc calls. As in
PostgREST, the database decides who may do what: each request runs in one transaction as the
JWT's role with `request.jwt.claims` set, so RLS, column grants and EXECUTE grants are the real
ones, and Postgres errors come back with PostgREST's status codes and JSON shape. The URL
grammar and the SQL it becomes live in rest_query.py.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from devstack.gateway import rest_query as q
from devstack.gateway.rest_query import PostgrestError
from devstack.http_errors import ApiError
from devstack.keys import JwtKeys, JwtRefused

log = logging.getLogger(__name__)

ANON_ROLE = "anon"
API_ROLES = ("anon", "authenticated", "service_role")
JSON_TYPE = "application/json; charset=utf-8"
OBJECT_TYPE = "application/vnd.pgrst.object+json"
T = TypeVar("T")

# --- who is asking --------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    role: str
    claims: dict[str, Any]


def request_token(request: Request) -> str | None:
    """The bearer token, or else the `apikey` header (Supabase's gateway does that fallback)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("apikey") or None


def authenticate(request: Request, keys: JwtKeys) -> Identity:
    """Verify the JWT like PostgREST: none means anon, a bad one is a 401 whatever the route."""
    token = request_token(request)
    if token is None:
        return Identity(ANON_ROLE, {"role": ANON_ROLE})
    try:
        claims = keys.verify(token)
    except JwtRefused as error:
        message = str(error)
        code = "PGRST303" if message == "JWT expired" else "PGRST301"
        challenge = f'Bearer error="invalid_token", error_description="{message.replace(chr(34), chr(39))}"'
        raise PostgrestError(401, code, message, headers={"WWW-Authenticate": challenge}) from error
    role = claims.get("role", ANON_ROLE)
    if role not in API_ROLES:
        # The authenticator must never become anything else, whatever the pool's session user
        # could do; Postgres would answer a foreign role with this same error.
        raise PostgrestError(403, "42501", f'permission denied to set role "{role}"')
    return Identity(role, {**claims, "role": role})


# --- the schema cache -----------------------------------------------------------------------

TABLES_SQL = """
select c.relname,
       coalesce((select pg_catalog.json_agg(pg_catalog.json_build_array(a.attname, pg_catalog.pg_get_expr(d.adbin, d.adrelid))
                                            order by a.attnum)
                   from pg_catalog.pg_attribute a
                   left join pg_catalog.pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
                  where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), '[]'),
       coalesce((select pg_catalog.array_agg(a.attname order by pg_catalog.array_position(i.indkey::int2[], a.attnum))
                   from pg_catalog.pg_index i
                   join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
                  where i.indrelid = c.oid and i.indisprimary), '{}')
  from pg_catalog.pg_class c
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
 where n.nspname = 'public' and c.relkind in ('r', 'v', 'm', 'f', 'p')
"""

FUNCTIONS_SQL = """
select p.proname, p.proretset,
       case when p.prorettype = 'pg_catalog.void'::pg_catalog.regtype then 'void'
            when t.typtype = 'c' or p.prorettype = 'pg_catalog.record'::pg_catalog.regtype then 'composite'
            else 'scalar' end,
       p.pronargdefaults,
       coalesce(p.proargnames, '{}'),
       coalesce(p.proargmodes::text[], '{}'),
       array(select pg_catalog.format_type(a.type, null)
               from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) with ordinality as a(type, n)
              order by a.n)
  from pg_catalog.pg_proc p
  join pg_catalog.pg_namespace n on n.oid = p.pronamespace
  join pg_catalog.pg_type t on t.oid = p.prorettype
 where n.nspname = 'public' and p.prokind = 'f'
"""


def function_info(row: tuple[Any, ...]) -> q.FunctionInfo | None:
    """One pg_proc row as the arguments a client can name; None if some input is unnamed."""
    name, returns_set, returns, default_count, names, modes, types = row
    inputs = [
        (names[i] if i < len(names) else "", types[i]) for i in range(len(types)) if not modes or modes[i] in ("i", "b", "v")
    ]
    if any(not arg_name for arg_name, _ in inputs):
        return None
    first_default = len(inputs) - default_count
    arguments = tuple(q.Argument(n, t, i >= first_default) for i, (n, t) in enumerate(inputs))
    return q.FunctionInfo(name, arguments, returns, returns_set)


class SchemaCache:
    """Tables and functions of `public`, read on first use and again whenever a request names
    something the cache lacks, so a migration applied while the gateway runs is picked up
    (Supabase reloads PostgREST's cache on DDL). Concurrent misses share one reload."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self.tables: dict[str, q.TableInfo] = {}
        self.functions: dict[str, list[q.FunctionInfo]] = {}
        self.read_at: float | None = None  # when the last reload started reading the catalog
        self.lock = asyncio.Lock()

    async def reload(self, unless_read_since: float | None = None) -> None:
        async with self.lock:
            if self.read_at is not None and unless_read_since is not None and self.read_at > unless_read_since:
                return  # a reload that began after the caller's miss already saw what it needs
            started = time.monotonic()
            async with self.pool.connection() as conn, conn.transaction():
                # An empty search_path makes the catalog's text fully schema-qualified.
                await conn.execute("set local search_path = ''")
                tables = await (await conn.execute(TABLES_SQL)).fetchall()
                functions = await (await conn.execute(FUNCTIONS_SQL)).fetchall()
            self.tables = {name: q.TableInfo(name, dict(columns), tuple(pk)) for name, columns, pk in tables}
            by_name: dict[str, list[q.FunctionInfo]] = {}
            for row in functions:
                info = function_info(row)
                if info is not None:
                    by_name.setdefault(info.name, []).append(info)
            self.functions = by_name
            self.read_at = started

    async def lookup(self, find: Callable[[], T | None]) -> T | None:
        """`find()` against the cache, reloading it once if that misses."""
        if self.read_at is None:
            await self.reload()
        missed_at = time.monotonic()
        found = find()
        if found is None:
            await self.reload(unless_read_since=missed_at)
            found = find()
        return found

    async def table(self, name: str, columns: list[str] | None = None) -> q.TableInfo:
        """The table, with every one of `columns` known (PGRST205 / PGRST204 otherwise)."""
        wanted = columns or []

        def complete() -> q.TableInfo | None:
            info = self.tables.get(name)
            return info if info is not None and all(c in info.columns for c in wanted) else None

        found = await self.lookup(complete)
        if found is not None:
            return found
        info = self.tables.get(name)
        if info is None:
            close = difflib.get_close_matches(name, list(self.tables), n=1)
            hint = f"Perhaps you meant the table 'public.{close[0]}'" if close else None
            raise PostgrestError(404, "PGRST205", f"Could not find the table 'public.{name}' in the schema cache", hint=hint)
        missing = next(c for c in wanted if c not in info.columns)
        raise PostgrestError(400, "PGRST204", f"Could not find the '{missing}' column of '{name}' in the schema cache")

    async def overloads(self, name: str) -> list[q.FunctionInfo]:
        return await self.lookup(lambda: self.functions.get(name)) or []


def matching_functions(overloads: list[q.FunctionInfo], given: set[str]) -> list[q.FunctionInfo]:
    """PostgREST's overload choice: every key is a parameter and every required one is given."""
    return [
        f
        for f in overloads
        if given <= {a.name for a in f.arguments} and {a.name for a in f.arguments if not a.has_default} <= given
    ]


def function_not_found(name: str, given: set[str]) -> PostgrestError:
    keys = ", ".join(sorted(given))
    shown = f"public.{name}({keys})" if keys else f"public.{name} without parameters"
    searched = f"public.{name} with parameters {keys}" if keys else f"public.{name} without parameters"
    return PostgrestError(
        404,
        "PGRST202",
        f"Could not find the function {shown} in the schema cache",
        f"Searched for the function {searched} or with a single unnamed json/jsonb parameter, "
        "but no matches were found in the schema cache.",
    )


def ambiguous_function(name: str, matches: list[q.FunctionInfo]) -> PostgrestError:
    listed = ", ".join(f"public.{name}({', '.join(f'{a.name} => {a.type}' for a in f.arguments)})" for f in matches)
    return PostgrestError(
        300,
        "PGRST203",
        f"Could not choose the best candidate function between: {listed}",
        hint="Try renaming the parameters or the function itself in the database so function overloading can be resolved",
    )


# --- errors ---------------------------------------------------------------------------------

EXACT_STATUS = {"23503": 409, "23505": 409, "25006": 405, "53400": 500, "57P01": 503, "P0001": 400,
                "42883": 404, "42P01": 404, "42P17": 500}  # fmt: skip
PREFIX_STATUS = {"08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403, "2D": 500, "38": 500, "39": 500,
                 "3B": 500, "40": 500, "53": 503, "54": 500, "55": 500, "57": 500, "58": 500, "F0": 500, "HV": 500,
                 "P0": 500, "XX": 500}  # fmt: skip


def http_status(sqlstate: str, message: str, anonymous: bool) -> int:
    """PostgREST's SQLSTATE -> HTTP table (docs: references/errors, "HTTP Status Codes")."""
    if sqlstate == "42501":
        return 401 if anonymous else 403
    if sqlstate == "21000":
        return 400 if message.endswith("requires a WHERE clause") else 500
    if sqlstate.startswith("PT"):  # PTnnn: the function chose the status; unreadable ones are 500
        return int(sqlstate[2:]) if sqlstate[2:].isdigit() and 100 <= int(sqlstate[2:]) <= 599 else 500
    return EXACT_STATUS.get(sqlstate) or PREFIX_STATUS.get(sqlstate[:2]) or 400


RAISE_PGRST_MESSAGE_HINT = (
    "MESSAGE must be a JSON object with obligatory keys: 'code', 'message' and optional keys: 'details', 'hint'."
)
RAISE_PGRST_DETAIL_HINT = (
    "DETAIL must be a JSON object with obligatory keys: 'status', 'headers' and optional key: 'status_text'."
)


def raised_response(message: str, detail: str | None) -> PostgrestError:
    """`RAISE SQLSTATE 'PGRST'`: the function chose the whole answer. MESSAGE is the body's JSON
    ({code, message, details?, hint?}), DETAIL the status and headers ({status, headers,
    status_text?}); anything else is PostgREST's PGRST121 (RaisePgrst.hs / ApiRequestError.hs)."""

    def malformed(details: str, hint: str) -> PostgrestError:
        return PostgrestError(500, "PGRST121", "Could not parse JSON in the \"RAISE SQLSTATE 'PGRST'\" error", details, hint)

    body = _json_object(message)
    if body is None or not isinstance(body.get("code"), str) or not isinstance(body.get("message"), str):
        return malformed(f"Invalid JSON value for MESSAGE: '{message}'", RAISE_PGRST_MESSAGE_HINT)
    if detail is None:
        return malformed("DETAIL is missing in the RAISE statement", RAISE_PGRST_DETAIL_HINT)
    control = _json_object(detail)
    headers = control.get("headers") if control is not None else None
    status = control.get("status") if control is not None else None
    if (
        not isinstance(status, int)
        or not isinstance(headers, dict)
        or not all(isinstance(v, str) for v in headers.values())
    ):
        return malformed(f"Invalid JSON value for DETAIL: '{detail}'", RAISE_PGRST_DETAIL_HINT)
    details, hint = body.get("details"), body.get("hint")
    return PostgrestError(
        status,
        body["code"],
        body["message"],
        details if isinstance(details, str) else None,
        hint if isinstance(hint, str) else None,
        dict(headers),
    )


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def postgres_error(error: psycopg.Error, identity: Identity | None) -> PostgrestError:
    if isinstance(error, PoolTimeout):
        return PostgrestError(504, "PGRST003", "Timed out acquiring connection from connection pool.")
    if error.sqlstate is None:
        if isinstance(error, psycopg.DataError):  # refused by psycopg before sending, e.g. a NUL byte
            return PostgrestError(400, "22021", str(error))
        return PostgrestError(503, "PGRST001", "Database client error. Retrying the connection.", str(error))
    diag = error.diag
    message = diag.message_primary or str(error)
    if error.sqlstate == "PGRST":
        return raised_response(message, diag.message_detail)
    anonymous = identity is None or identity.role == ANON_ROLE
    status = http_status(error.sqlstate, message, anonymous)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return PostgrestError(status, error.sqlstate, message, diag.message_detail, diag.message_hint, headers)


# --- request details ------------------------------------------------------------------------


@dataclass(frozen=True)
class Prefer:
    representation: bool = False
    count: bool = False
    resolution: str | None = None  # "merge-duplicates" | "ignore-duplicates"
    missing_default: bool = False


def parse_prefer(values: list[str]) -> Prefer:
    """Every `Prefer` header, comma-separated tokens; unknown tokens are ignored (lenient)."""
    tokens = {t.strip() for value in values for t in value.split(",")}
    resolution = next((t[11:] for t in tokens if t in ("resolution=merge-duplicates", "resolution=ignore-duplicates")), None)
    return Prefer(
        representation="return=representation" in tokens,
        count=any(t in tokens for t in ("count=exact", "count=planned", "count=estimated")),
        resolution=resolution,
        missing_default="missing=default" in tokens,
    )


def wants_object(request: Request) -> bool:
    return OBJECT_TYPE in request.headers.get("accept", "")


async def read_json(request: Request, empty: Any = None) -> tuple[Any, str]:
    """The body parsed (to inspect its keys) and as text (handed to Postgres untouched)."""
    raw = await request.body()
    if not raw.strip() and empty is not None:
        return empty, json.dumps(empty)
    try:
        text = raw.decode("utf-8")
        return json.loads(text), text
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PostgrestError(400, "PGRST102", "Empty or invalid json") from None


def route_path(request: Request) -> str:
    path, root = request.scope["path"], request.scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


SETUP_SQL = sql.SQL(
    "select pg_catalog.set_config('role', %(role)s, true), pg_catalog.set_config('request.jwt.claims', %(claims)s, true), "
    "pg_catalog.set_config('request.method', %(method)s, true), pg_catalog.set_config('request.path', %(path)s, true), "
    "pg_catalog.set_config('request.headers', %(headers)s, true), pg_catalog.set_config('request.cookies', %(cookies)s, true), "
    "pg_catalog.set_config('search_path', 'public, extensions', true), "
    "pg_catalog.set_config('transaction_read_only', %(read_only)s, true)"
)


def request_settings(request: Request, identity: Identity, read_only: bool) -> dict[str, str]:
    """What PostgREST puts in transaction-local settings for RLS policies and functions to read."""
    return {
        "role": identity.role,
        "claims": json.dumps(identity.claims),
        "method": request.method,
        "path": route_path(request),
        "headers": json.dumps({k.lower(): v for k, v in request.headers.items()}),
        "cookies": json.dumps(dict(request.cookies)),
        "read_only": "on" if read_only else "off",
    }


# --- responses ------------------------------------------------------------------------------


def content_range(lower: int, page_total: int, total: int | None) -> str:
    """`0-9/123`, `0-9/*`, `*/0`: PostgREST's Content-Range for a page of rows."""
    shown = f"{lower}-{lower + page_total - 1}" if page_total > 0 and total != 0 else "*"
    return f"{shown}/{'*' if total is None else total}"


def json_response(status: int, body: str | None, headers: dict[str, str], singular: bool = False) -> Response:
    if body is None:  # HEAD, return=minimal
        return Response(status_code=status, headers=headers)
    content_type = f"{OBJECT_TYPE}; charset=utf-8" if singular else JSON_TYPE
    return Response(body, status, headers={**headers, "content-type": content_type})


def singular_error(rows: int) -> PostgrestError:
    return PostgrestError(406, "PGRST116", "Cannot coerce the result to a single JSON object", f"The result contains {rows} rows")


def singular_check(singular: bool) -> Callable[[tuple[Any, ...]], None] | None:
    """For writes asking for one object: anything but one row rolls the transaction back."""

    def check(row: tuple[Any, ...]) -> None:
        if row[1] != 1:
            raise singular_error(row[1])

    return check if singular else None


def read_response(plan: q.ReadPlan, row: tuple[Any, ...], singular: bool) -> Response:
    total, page_total, body = row
    if singular and page_total != 1:
        raise singular_error(page_total)
    if total is not None and plan.offset > total:
        detail = f"An offset of {plan.offset} was requested, but there are only {total} rows."
        raise PostgrestError(416, "PGRST103", "Requested range not satisfiable", detail)
    status = 206 if total is not None and page_total < total else 200
    return json_response(status, body, {"Content-Range": content_range(plan.offset, page_total, total)}, singular)


def write_response(row: tuple[Any, ...], prefer: Prefer, singular: bool, inserted: bool) -> Response:
    _, page_total, body = row
    total = page_total if prefer.count else None
    shown = f"*/{'*' if total is None else total}" if inserted else content_range(0, page_total, total)
    headers = {"Content-Range": shown}
    if prefer.representation:
        return json_response(201 if inserted else 200, body, headers, singular)
    return Response(status_code=201 if inserted else 204, headers=headers)


def body_shape(request: Request, singular: bool, wanted: bool = True) -> q.BodyShape:
    if request.method == "HEAD" or not wanted:
        return q.BODY_NONE
    return q.BODY_OBJECT if singular else q.BODY_ARRAY


# --- the endpoints --------------------------------------------------------------------------

TABLE_METHODS = ("GET", "HEAD", "POST", "PATCH", "DELETE")
# Routed to us so unsupported ones get PostgREST's JSON 405 rather than Starlette's text one.
ROUTED_METHODS = [*TABLE_METHODS, "PUT", "OPTIONS"]
Handler = Callable[[Request, Identity], Awaitable[Response]]


class RestApi:
    """The endpoints over one pool of `authenticator` connections and the stack's JWT keys."""

    def __init__(self, pool: AsyncConnectionPool, keys: JwtKeys) -> None:
        self.pool = pool
        self.keys = keys
        self.schema = SchemaCache(pool)

    async def guard(self, request: Request, handler: Handler) -> Response:
        """Authenticate, run, and turn every failure into PostgREST's error JSON."""
        identity = None
        try:
            identity = authenticate(request, self.keys)
            return await handler(request, identity)
        except ApiError as error:
            return error.to_response()
        except psycopg.Error as error:
            return postgres_error(error, identity).to_response()
        except Exception as error:  # a bug here must still answer in PostgREST's shape, and be logged
            log.exception("REST gateway failed on %s %s", request.method, request.url.path)
            return PostgrestError(500, "PGRSTX00", "Internal error in the devstack REST gateway", repr(error)).to_response()

    async def execute(
        self,
        request: Request,
        identity: Identity,
        statement: sql.Composed,
        bind: q.Binder,
        *,
        read_only: bool,
        check: Callable[[tuple[Any, ...]], None] | None = None,
    ) -> tuple[Any, ...]:
        """One transaction: become the JWT's role with its claims, run the statement, check it."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(SETUP_SQL, request_settings(request, identity, read_only))
            cursor = await conn.execute(statement, bind.values)
            row = await cursor.fetchone()
            assert row is not None  # every statement built here answers exactly one row
            if check is not None:
                check(row)  # raising here rolls the transaction back
        return row

    async def table_endpoint(self, request: Request) -> Response:
        return await self.guard(request, self.table_request)

    async def rpc_endpoint(self, request: Request) -> Response:
        return await self.guard(request, self.rpc_request)

    async def table_request(self, request: Request, identity: Identity) -> Response:
        method, name = request.method, request.path_params["table"]
        if method == "OPTIONS":
            return Response(status_code=200, headers={"Allow": "OPTIONS,GET,HEAD,POST,PATCH,DELETE"})
        if method not in TABLE_METHODS:
            raise PostgrestError(405, "PGRST117", f"Unsupported HTTP method: {method}")
        params = request.query_params.multi_items()
        prefer = parse_prefer(request.headers.getlist("prefer"))
        if method == "POST":
            return await self.insert(request, identity, name, params, prefer)
        if method == "PATCH":
            return await self.update(request, identity, name, params, prefer)
        table = await self.schema.table(name)
        if method == "DELETE":
            return await self.delete(request, identity, table, prefer)
        plan = q.apply_range_header(q.parse_read_plan(params), request.headers.get("range"))
        singular, bind = wants_object(request), q.Binder()
        statement = q.read_statement(table.ident, table.ident, plan, bind, count=prefer.count, body=body_shape(request, singular))
        return read_response(plan, await self.execute(request, identity, statement, bind, read_only=True), singular)

    async def insert(
        self, request: Request, identity: Identity, name: str, params: list[tuple[str, str]], prefer: Prefer
    ) -> Response:
        payload, text = await read_json(request)
        rows = [payload] if isinstance(payload, dict) else payload
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise PostgrestError(400, "PGRST102", "Empty or invalid json")
        given = dict(params)
        if "columns" in given:
            columns = q.parse_columns(given["columns"])
        else:
            columns = list(rows[0]) if rows else []
            if any(set(r) != set(columns) for r in rows):
                raise PostgrestError(400, "PGRST102", "All object keys must match")
        table = await self.schema.table(name, columns)
        upsert = None
        if prefer.resolution:
            target = tuple(q.parse_columns(given["on_conflict"])) if given.get("on_conflict") else table.primary_key
            upsert = q.Upsert(target, prefer.resolution == "ignore-duplicates")
        singular, bind = wants_object(request), q.Binder()
        statement = q.insert_statement(
            table,
            columns,
            f"[{text}]" if isinstance(payload, dict) else text,
            bind,
            missing_default=prefer.missing_default and "columns" in given,
            upsert=upsert,
            returning=q.parse_select(given.get("select")) if prefer.representation else None,
            body=body_shape(request, singular, prefer.representation),
        )
        row = await self.execute(request, identity, statement, bind, read_only=False, check=singular_check(singular))
        return write_response(row, prefer, singular, inserted=True)

    async def update(
        self, request: Request, identity: Identity, name: str, params: list[tuple[str, str]], prefer: Prefer
    ) -> Response:
        payload, text = await read_json(request)
        if not isinstance(payload, dict):
            raise PostgrestError(400, "PGRST102", "Empty or invalid json")
        given = dict(params)
        columns = q.parse_columns(given["columns"]) if "columns" in given else list(payload)
        table = await self.schema.table(name, columns)
        plan = writable_plan(params)
        singular = wants_object(request)
        if not columns:  # nothing to set: PostgREST answers without touching the table
            return write_response((None, 0, "[]"), prefer, singular=False, inserted=False)
        bind = q.Binder()
        statement = q.update_statement(
            table,
            columns,
            text,
            plan,
            bind,
            returning=plan.select if prefer.representation else None,
            body=body_shape(request, singular, prefer.representation),
        )
        row = await self.execute(request, identity, statement, bind, read_only=False, check=singular_check(singular))
        return write_response(row, prefer, singular, inserted=False)

    async def delete(self, request: Request, identity: Identity, table: q.TableInfo, prefer: Prefer) -> Response:
        plan = writable_plan(request.query_params.multi_items())
        singular, bind = wants_object(request), q.Binder()
        statement = q.delete_statement(
            table,
            plan,
            bind,
            returning=plan.select if prefer.representation else None,
            body=body_shape(request, singular, prefer.representation),
        )
        row = await self.execute(request, identity, statement, bind, read_only=False, check=singular_check(singular))
        return write_response(row, prefer, singular, inserted=False)

    async def rpc_request(self, request: Request, identity: Identity) -> Response:
        method, name = request.method, request.path_params["function"]
        if method == "OPTIONS":
            return Response(status_code=200, headers={"Allow": "OPTIONS,GET,HEAD,POST"})
        if method not in ("GET", "HEAD", "POST"):
            raise PostgrestError(405, "PGRST117", f"Unsupported HTTP method: {method}")
        overloads = await self.schema.overloads(name)
        params = request.query_params.multi_items()
        if method == "POST":
            args, args_json = await read_json(request, empty={})
            if not isinstance(args, dict):  # PostgREST's bulk calls (a JSON array) are not supported
                raise PostgrestError(400, "PGRST102", "Empty or invalid json")
            filters = params
        else:  # GET: query params naming an argument are arguments, the rest filter the result
            names = {a.name for f in overloads for a in f.arguments}
            args = {k: v for k, v in params if k in names}
            args_json, filters = json.dumps(args), [(k, v) for k, v in params if k not in names]
        given = set(args)
        matches = await self.schema.lookup(lambda: matching_functions(self.schema.functions.get(name, []), given) or None)
        if not matches:
            raise function_not_found(name, given)
        if len(matches) > 1:
            raise ambiguous_function(name, matches)
        function = matches[0]
        plan = q.apply_range_header(q.parse_read_plan(filters), request.headers.get("range"))
        singular, prefer, bind = wants_object(request), parse_prefer(request.headers.getlist("prefer")), q.Binder()
        source = q.call_source(function, [a.name for a in function.arguments if a.name in args], args_json, bind)
        as_object = singular or (function.returns == "composite" and not function.returns_set)
        statement = q.rpc_statement(function, source, plan, bind, count=prefer.count, body=body_shape(request, as_object))
        check = singular_check(singular and function.returns_set and method == "POST")
        row = await self.execute(request, identity, statement, bind, read_only=method != "POST", check=check)
        if function.returns == "void":
            return Response(status_code=204)
        if function.returns == "composite" and function.returns_set:
            return read_response(plan, row, singular)
        body = None if method == "HEAD" else row[2] or "null"
        return json_response(200, body, {"Content-Range": "0-0/*"}, singular and function.returns_set)


def writable_plan(params: list[tuple[str, str]]) -> q.ReadPlan:
    """Filters and `select=` for PATCH/DELETE; order/limit there (limited updates) is refused."""
    plan = q.parse_read_plan(params)
    if plan.order or plan.limit is not None or plan.offset:
        raise PostgrestError(
            400, "PGRST100", "limit, offset and order on PATCH or DELETE are not supported by the devstack gateway"
        )
    return plan


def rest_routes(pool: AsyncConnectionPool, keys: JwtKeys) -> list[BaseRoute]:
    """PostgREST's routes, to mount at /rest/v1: `/rpc/<function>` and `/<table>`."""
    api = RestApi(pool, keys)
    return [
        Route("/rpc/{function}", api.rpc_endpoint, methods=ROUTED_METHODS),
        Route("/{table}", api.table_endpoint, methods=ROUTED_METHODS),
    ]
