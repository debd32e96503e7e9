"""PostgREST's URL grammar (select, filters, and/or trees, order, limit/offset, Range) as SQL.

Everything a client sends ends up either in a psycopg `sql.Identifier` or in a bind parameter;
the only SQL text spliced in verbatim is the fixed vocabulary of this module and what the
system catalog itself says (column defaults, argument types), never request text. Values are
bound untyped (psycopg sends `str` with the unknown OID), so Postgres infers the column's type
exactly as it does for PostgREST, and a bad value is Postgres' own 22P02, not ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from devstack.http_errors import ApiError


class PostgrestError(ApiError):
    """An error answer in PostgREST's shape: {"code", "details", "hint", "message"}."""

    content_type = "application/json; charset=utf-8"

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: str | None = None,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers)
        self.code, self.details, self.hint = code, details, hint

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "details": self.details, "hint": self.hint, "message": self.message}


def parse_error(what: str, text: str, details: str) -> PostgrestError:
    """PGRST100, worded like PostgREST's parser errors so a log line reads the same."""
    return PostgrestError(400, "PGRST100", f'"failed to parse {what} ({text})" (line 1, column 1)', details)


UNSUPPORTED = "not supported by the devstack gateway (no embedding, casts or JSON paths)"

# --- the parsed request -------------------------------------------------------------------


@dataclass(frozen=True)
class SelectItem:
    """One entry of `select=`: a column (None means `*`) and its optional output name."""

    column: str | None
    alias: str | None = None


@dataclass(frozen=True)
class Filter:
    column: str
    operator: str
    value: str | tuple[str, ...]  # a tuple only for `in`
    negated: bool = False
    language: str | None = None  # fts(english)


@dataclass(frozen=True)
class Logic:
    conjunction: str  # "and" | "or"
    children: tuple[Condition, ...]
    negated: bool = False


Condition = Filter | Logic


@dataclass(frozen=True)
class OrderTerm:
    column: str
    descending: bool = False
    nulls: str | None = None  # "first" | "last"


@dataclass(frozen=True)
class ReadPlan:
    select: tuple[SelectItem, ...]
    where: tuple[Condition, ...]
    order: tuple[OrderTerm, ...]
    limit: int | None
    offset: int


STAR = (SelectItem(None),)

# --- tokenising ---------------------------------------------------------------------------


def split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses and double quotes (backslash escapes in quotes)."""
    parts: list[str] = []
    current: list[str] = []
    depth, quoted, escaped = 0, False, False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def unquote(text: str) -> str:
    """`"a \\"b\\""` -> `a "b"`; anything not wrapped in double quotes is returned as is."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


_BARE_NAME = re.compile(r'^[^,.:()"*\s]+$')


def field_name(text: str, what: str) -> str:
    """A column name as PostgREST reads it: bare or double-quoted; JSON paths are refused."""
    if "\x00" in text:  # libpq would silently cut the identifier at the NUL
        raise parse_error(what, text.replace("\x00", "\\0"), "column names cannot contain NUL")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return unquote(text)
    if "->" in text or "::" in text or not _BARE_NAME.match(text):
        raise parse_error(what, text, f"unexpected column reference {text!r}: {UNSUPPORTED}")
    return text


# --- select, order, filters ---------------------------------------------------------------


def parse_select(text: str | None) -> tuple[SelectItem, ...]:
    if text is None or text.strip() in ("", "*"):
        return STAR
    items: list[SelectItem] = []
    for raw in split_top_level(text):
        item = raw.strip()
        if item == "*":
            items.append(SelectItem(None))
            continue
        if "(" in item or item.startswith("..."):
            raise parse_error("select parameter", text, f"resource embedding and aggregates are {UNSUPPORTED}")
        alias, column = None, item
        match = re.match(r'^("(?:[^"\\]|\\.)*"|[^":]+):(?!:)(.+)$', item)
        if match:
            alias, column = field_name(match.group(1), "select parameter"), match.group(2)
        items.append(SelectItem(field_name(column, "select parameter"), alias))
    return tuple(items)


def parse_order(text: str) -> tuple[OrderTerm, ...]:
    terms: list[OrderTerm] = []
    for raw in split_top_level(text):
        match = re.match(r'^("(?:[^"\\]|\\.)*"|[^".]+)((?:\.[a-z]+)*)$', raw.strip())
        if not match:
            raise parse_error("order", text, f"unexpected order term {raw!r}")
        modifiers = [m for m in match.group(2).split(".") if m]
        direction = [m for m in modifiers if m in ("asc", "desc")]
        nulls = [m for m in modifiers if m in ("nullsfirst", "nullslast")]
        if len(direction) > 1 or len(nulls) > 1 or len(direction) + len(nulls) != len(modifiers):
            raise parse_error("order", text, "expecting asc, desc, nullsfirst or nullslast")
        terms.append(
            OrderTerm(
                field_name(match.group(1), "order"),
                descending=direction == ["desc"],
                nulls=nulls[0][5:] if nulls else None,
            )
        )
    return tuple(terms)


OPERATORS = {
    "eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
    "like": "like", "ilike": "ilike", "match": "~", "imatch": "~*", "isdistinct": "is distinct from",
    "cs": "@>", "cd": "<@", "ov": "&&", "sl": "<<", "sr": ">>", "nxr": "&<", "nxl": "&>", "adj": "-|-",
}  # fmt: skip
IS_VALUES = {"null": "is null", "not_null": "is not null", "true": "is true", "false": "is false",
             "unknown": "is unknown"}  # fmt: skip
FTS_FUNCTIONS = {"fts": "to_tsquery", "plfts": "plainto_tsquery", "phfts": "phraseto_tsquery",
                 "wfts": "websearch_to_tsquery"}  # fmt: skip


def parse_filter(column: str, expression: str, *, in_logic_tree: bool = False) -> Filter:
    """`col=not.op.value` (top level) or `col.not.op.value` (inside or=/and=)."""
    shown = f"{column}.{expression}" if in_logic_tree else expression
    match = re.match(r"^(not\.)?([a-z]+)(?:\(([a-z_]+)\))?\.(.*)$", expression, re.DOTALL)
    if not match:
        raise parse_error("filter", shown, "expecting [not.]operator.value")
    negated, operator, language, value = bool(match.group(1)), match.group(2), match.group(3), match.group(4)
    if operator not in OPERATORS and operator not in FTS_FUNCTIONS and operator not in ("is", "in"):
        raise parse_error("filter", shown, f"unknown operator {operator!r}")
    if language is not None and operator not in FTS_FUNCTIONS:
        raise parse_error("filter", shown, "only full-text operators take a language")
    name = field_name(column, "filter")
    if operator == "in":
        if not (value.startswith("(") and value.endswith(")")):
            raise parse_error("filter", shown, "expecting in.(value,...)")
        inner = value[1:-1]
        values = tuple(unquote(v) for v in split_top_level(inner)) if inner else ()
        return Filter(name, "in", values, negated)
    if in_logic_tree:
        value = unquote(value)
    if operator == "is" and value.lower() not in IS_VALUES:
        raise parse_error("filter", shown, "expecting is.null, is.not_null, is.true, is.false or is.unknown")
    return Filter(name, operator, value, negated, language)


MAX_LOGIC_DEPTH = 16


def parse_logic(key: str, value: str, depth: int = 0) -> Logic:
    """`or=(a.eq.1,and(b.gt.2,c.is.null))`, `not.and=(...)`: PostgREST's logic trees."""
    negated = key.startswith("not.")
    conjunction = key[4:] if negated else key
    if not (value.startswith("(") and value.endswith(")")) or value == "()":
        raise parse_error("logic tree", value, "expecting (condition,...)")
    if depth >= MAX_LOGIC_DEPTH:  # a bound on recursion here and in rendering, not a PostgREST rule
        raise parse_error("logic tree", value, f"nested deeper than {MAX_LOGIC_DEPTH} levels")
    children: list[Condition] = []
    for raw in split_top_level(value[1:-1]):
        part = raw.strip()
        nested = re.match(r"^(not\.)?(and|or)(\(.*\))$", part, re.DOTALL)
        if nested:
            children.append(parse_logic((nested.group(1) or "") + nested.group(2), nested.group(3), depth + 1))
            continue
        column = re.match(r'^("(?:[^"\\]|\\.)*"|[^".]+)\.(.*)$', part, re.DOTALL)
        if not column:
            raise parse_error("logic tree", value, f"unexpected condition {part!r}")
        children.append(parse_filter(column.group(1), column.group(2), in_logic_tree=True))
    return Logic(conjunction, tuple(children), negated)


def parse_count(name: str, text: str) -> int:
    if not re.fullmatch(r"\d{1,18}", text):
        raise parse_error(f"{name} parameter", text, "expecting a non-negative integer")
    return int(text)


def parse_read_plan(params: list[tuple[str, str]]) -> ReadPlan:
    """Everything in a query string but the write-only params: select, filters, order, page."""
    values = dict(params)
    conditions: list[Condition] = []
    for key, value in params:
        if key in ("select", "order", "limit", "offset", "on_conflict", "columns"):
            continue
        if key in ("and", "or", "not.and", "not.or"):
            conditions.append(parse_logic(key, value))
        else:
            conditions.append(parse_filter(key, value))
    return ReadPlan(
        select=parse_select(values.get("select")),
        where=tuple(conditions),
        order=parse_order(values["order"]) if values.get("order") else (),
        limit=parse_count("limit", values["limit"]) if "limit" in values else None,
        offset=parse_count("offset", values["offset"]) if "offset" in values else 0,
    )


def apply_range_header(plan: ReadPlan, range_header: str | None) -> ReadPlan:
    """Intersect `Range: 0-9` with limit/offset, as PostgREST does; a malformed Range is ignored."""
    match = re.fullmatch(r"\s*(?:items=)?(\d{1,18})-(\d{0,18})\s*", range_header or "")
    if not match:
        return plan
    low, high = int(match.group(1)), int(match.group(2)) if match.group(2) else None
    start = max(low, plan.offset)
    ends = [e for e in (high, plan.offset + plan.limit - 1 if plan.limit is not None else None) if e is not None]
    limit = max(0, min(ends) - start + 1) if ends else None
    return ReadPlan(plan.select, plan.where, plan.order, limit, start)


# --- rendering ----------------------------------------------------------------------------


class Binder:
    """Collects bind parameters under unique names, so one clause can appear twice."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any) -> sql.Placeholder:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return sql.Placeholder(name)


def column_ref(qualifier: sql.Composable, name: str) -> sql.Composable:
    return sql.SQL("{}.{}").format(qualifier, sql.Identifier(name))


def select_list(items: tuple[SelectItem, ...], qualifier: sql.Composable) -> sql.Composable:
    rendered = [
        sql.SQL("{}.*").format(qualifier)
        if item.column is None
        else sql.SQL("{} as {}").format(column_ref(qualifier, item.column), sql.Identifier(item.alias))
        if item.alias
        else column_ref(qualifier, item.column)
        for item in items
    ]
    return sql.SQL(", ").join(rendered)


def render_condition(condition: Condition, qualifier: sql.Composable, bind: Binder) -> sql.Composable:
    if isinstance(condition, Logic):
        joiner = sql.SQL(f" {condition.conjunction} ")
        inner = joiner.join(render_condition(c, qualifier, bind) for c in condition.children)
        rendered: sql.Composable = sql.SQL("({})").format(inner)
    else:
        rendered = _render_filter(condition, column_ref(qualifier, condition.column), bind)
    return sql.SQL("not {}").format(rendered) if condition.negated else rendered


def _render_filter(f: Filter, column: sql.Composable, bind: Binder) -> sql.Composable:
    if isinstance(f.value, tuple):  # in.(...)
        # One untyped array literal, as PostgREST sends it: Postgres reads it as an array of the
        # column's type, and a list of any length is still one parameter.
        return sql.SQL("{} = any({})").format(column, bind(array_literal(f.value)))
    if f.operator == "is":
        return sql.SQL("({} {})").format(column, sql.SQL(IS_VALUES[f.value.lower()]))
    if f.operator in FTS_FUNCTIONS:
        function = sql.SQL("pg_catalog." + FTS_FUNCTIONS[f.operator])
        config = sql.SQL("{}::regconfig, ").format(bind(f.language)) if f.language else sql.SQL("")
        return sql.SQL("{} @@ {}({}{})").format(column, function, config, bind(f.value))
    value = f.value.replace("*", "%") if f.operator in ("like", "ilike") else f.value
    return sql.SQL("{} {} {}").format(column, sql.SQL(OPERATORS[f.operator]), bind(value))


def array_literal(values: tuple[str, ...]) -> str:
    """A Postgres array literal with every element quoted: `{"a","b \\"c\\""}`."""
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(quoted) + "}"


def where_clause(conditions: tuple[Condition, ...], qualifier: sql.Composable, bind: Binder) -> sql.Composable:
    if not conditions:
        return sql.SQL("")
    return sql.SQL(" where ") + sql.SQL(" and ").join(render_condition(c, qualifier, bind) for c in conditions)


def order_clause(order: tuple[OrderTerm, ...], qualifier: sql.Composable) -> sql.Composable:
    if not order:
        return sql.SQL("")
    terms = [
        sql.SQL("{}{}{}").format(
            column_ref(qualifier, t.column),
            sql.SQL(" desc" if t.descending else " asc"),
            sql.SQL(f" nulls {t.nulls}" if t.nulls else ""),
        )
        for t in order
    ]
    return sql.SQL(" order by ") + sql.SQL(", ").join(terms)


def page_clause(limit: int | None, offset: int, bind: Binder) -> sql.Composable:
    clause = sql.SQL(" limit {}").format(bind(limit)) if limit is not None else sql.SQL("")
    return clause + (sql.SQL(" offset {}").format(bind(offset)) if offset else sql.SQL(""))


# What the last SELECT hands back as `body`: a JSON array, one object, or nothing.
BODY_ARRAY = "coalesce(pg_catalog.json_agg(_pgrst_t), '[]')::text"
BODY_OBJECT = "(pg_catalog.json_agg(_pgrst_t) -> 0)::text"
BODY_NONE = "null::text"
BodyShape = str


def read_statement(
    source: sql.Composable,
    qualifier: sql.Composable,
    plan: ReadPlan,
    bind: Binder,
    *,
    count: bool,
    body: BodyShape,
    prelude: sql.Composable | None = None,
) -> sql.Composed:
    """One SELECT answering (total or null, rows on this page, body) like PostgREST's reads."""
    filtered = sql.SQL("from {}{}").format(source, where_clause(plan.where, qualifier, bind))
    total = sql.SQL("(select pg_catalog.count(*) {})").format(filtered) if count else sql.SQL("null::bigint")
    page = sql.SQL("select {} {}{}{}").format(
        select_list(plan.select, qualifier),
        filtered,
        order_clause(plan.order, qualifier),
        page_clause(plan.limit, plan.offset, bind),
    )
    return sql.SQL("{}pgrst_source as ({}) select {}, pg_catalog.count(_pgrst_t), {} from pgrst_source as _pgrst_t").format(
        prelude or sql.SQL("with "), page, total, sql.SQL(body)
    )


def mutation_statement(mutation: sql.Composable, body: BodyShape) -> sql.Composed:
    """Wrap INSERT/UPDATE/DELETE ... RETURNING so every write answers (null, row count, body)."""
    return sql.SQL(
        "with pgrst_source as ({}) select null::bigint, pg_catalog.count(_pgrst_t), {} from pgrst_source as _pgrst_t"
    ).format(mutation, sql.SQL(body))


def returning_clause(items: tuple[SelectItem, ...] | None, qualifier: sql.Composable) -> sql.Composable:
    """RETURNING only what `select=` asks for (so privileges are checked like PostgREST's)."""
    if items is None:
        return sql.SQL(" returning 1")
    return sql.SQL(" returning ") + select_list(items, qualifier)


# --- writes and calls ---------------------------------------------------------------------


@dataclass(frozen=True)
class TableInfo:
    """A table or view of the exposed schema, as the schema cache read it from the catalog."""

    name: str
    columns: dict[str, str | None]  # column -> its DEFAULT expression (catalog text) or None
    primary_key: tuple[str, ...]

    @property
    def ident(self) -> sql.Composable:
        return sql.Identifier("public", self.name)


@dataclass(frozen=True)
class Argument:
    name: str
    type: str  # format_type() of the declared type: catalog text, never request text
    has_default: bool


@dataclass(frozen=True)
class FunctionInfo:
    name: str
    arguments: tuple[Argument, ...]
    returns: str  # "void" | "scalar" | "composite"
    returns_set: bool

    @property
    def ident(self) -> sql.Composable:
        return sql.Identifier("public", self.name)


@dataclass(frozen=True)
class Upsert:
    target: tuple[str, ...]  # the ON CONFLICT columns
    ignore: bool  # resolution=ignore-duplicates


def catalog_text(text: str) -> sql.Composable:
    """SQL the catalog wrote (a DEFAULT expression, a type name): trusted, but `%` must be
    doubled since the statement carries placeholders."""
    return sql.SQL(text.replace("%", "%%"))


def parse_columns(text: str) -> list[str]:
    """`columns=a,"b c"` (and on_conflict=): a list of column names."""
    return [field_name(part.strip(), "columns parameter") for part in split_top_level(text) if part.strip()]


def insert_statement(
    table: TableInfo,
    columns: list[str],
    rows_json: str,
    bind: Binder,
    *,
    missing_default: bool,
    upsert: Upsert | None,
    returning: tuple[SelectItem, ...] | None,
    body: BodyShape,
) -> sql.Composed:
    """INSERT from the JSON array in one bind parameter, typed by the table's own row type.

    With a column list from the payload's keys, a column nobody sent takes its DEFAULT (that
    is how `user_id` becomes auth.uid()). With `columns=` and some rows lacking a key, that
    row gets NULL there, as in PostgREST, unless `Prefer: missing=default` asks for the
    column's default expression instead.
    """
    target, rows = table.ident, bind(rows_json)
    if not columns:
        source: sql.Composable = sql.SQL("select from pg_catalog.jsonb_array_elements({}::jsonb)").format(rows)
    elif missing_default:
        cells = [
            sql.SQL("case when _pgrst_row.value ? {} then _pgrst_rec.{} else {} end").format(
                bind(c), sql.Identifier(c), catalog_text(table.columns.get(c) or "null")
            )
            for c in columns
        ]
        source = sql.SQL(
            "select {} from pg_catalog.jsonb_array_elements({}::jsonb) as _pgrst_row, "
            "pg_catalog.jsonb_populate_record(null::{}, _pgrst_row.value) as _pgrst_rec"
        ).format(sql.SQL(", ").join(cells), rows, target)
    else:
        source = sql.SQL("select {} from pg_catalog.jsonb_populate_recordset(null::{}, {}::jsonb) as _pgrst_rec").format(
            select_list(tuple(SelectItem(c) for c in columns), sql.Identifier("_pgrst_rec")), target, rows
        )
    column_list = sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, columns))) if columns else sql.SQL("")
    statement = sql.SQL("insert into {}{} {}").format(target, column_list, source)
    if upsert is not None:
        statement += _on_conflict(upsert, columns)
    return mutation_statement(statement + returning_clause(returning, target), body)


def _on_conflict(upsert: Upsert, columns: list[str]) -> sql.Composable:
    target = sql.SQL("({}) ").format(sql.SQL(", ").join(map(sql.Identifier, upsert.target))) if upsert.target else sql.SQL("")
    if upsert.ignore or not columns:
        return sql.SQL(" on conflict {}do nothing").format(target)
    assignments = sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in columns)
    return sql.SQL(" on conflict {}do update set {}").format(target, assignments)


def update_statement(
    table: TableInfo,
    columns: list[str],
    row_json: str,
    plan: ReadPlan,
    bind: Binder,
    *,
    returning: tuple[SelectItem, ...] | None,
    body: BodyShape,
) -> sql.Composed:
    """UPDATE ... SET (cols) = (the JSON object read as the table's row type) WHERE filters."""
    target = table.ident
    record = sql.SQL("select {} from pg_catalog.jsonb_populate_record(null::{}, {}::jsonb) as _pgrst_rec").format(
        select_list(tuple(SelectItem(c) for c in columns), sql.Identifier("_pgrst_rec")), target, bind(row_json)
    )
    statement = sql.SQL("update {} set ({}) = ({}){}").format(
        target, sql.SQL(", ").join(map(sql.Identifier, columns)), record, where_clause(plan.where, target, bind)
    )
    return mutation_statement(statement + returning_clause(returning, target), body)


def delete_statement(
    table: TableInfo, plan: ReadPlan, bind: Binder, *, returning: tuple[SelectItem, ...] | None, body: BodyShape
) -> sql.Composed:
    target = table.ident
    statement = sql.SQL("delete from {}{}").format(target, where_clause(plan.where, target, bind))
    return mutation_statement(statement + returning_clause(returning, target), body)


def call_source(function: FunctionInfo, given: list[str], args_json: str, bind: Binder) -> sql.Composable:
    """`jsonb_to_record($1) as _pgrst_args(a uuid, ...), public.fn(a => _pgrst_args.a, ...)`.

    Only the arguments the client sent are passed, so the others take the function's defaults;
    each is converted to its declared type by Postgres itself (arrays and json included).
    """
    declared = {a.name: a.type for a in function.arguments}
    named = sql.SQL(", ").join(sql.SQL("{0} => _pgrst_args.{0}").format(sql.Identifier(a)) for a in given)
    call = sql.SQL("{}({})").format(function.ident, named)
    if not given:
        return call
    definitions = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(a), catalog_text(declared[a])) for a in given)
    return sql.SQL("pg_catalog.jsonb_to_record({}::jsonb) as _pgrst_args({}), {}").format(bind(args_json), definitions, call)


def rpc_statement(
    function: FunctionInfo, source: sql.Composable, plan: ReadPlan, bind: Binder, *, count: bool, body: BodyShape
) -> sql.Composed:
    """Call once (a MATERIALIZED CTE), then shape the result like a read of a table."""
    if function.returns == "composite":
        prelude = sql.SQL("with _pgrst_call as materialized (select _pgrst_fn.* from {} as _pgrst_fn), ").format(source)
        call = sql.Identifier("_pgrst_call")
        return read_statement(call, call, plan, bind, count=count, body=body, prelude=prelude)
    if function.returns == "void":
        return sql.SQL("select null::bigint, 0::bigint, null::text from {} as _pgrst_fn").format(source)
    if not function.returns_set:
        return sql.SQL(
            "select null::bigint, 1::bigint, pg_catalog.to_json(_pgrst_fn.pgrst_scalar)::text from {} as _pgrst_fn(pgrst_scalar)"
        ).format(source)
    return sql.SQL(
        "with _pgrst_call as materialized (select _pgrst_fn.pgrst_scalar from {} as _pgrst_fn(pgrst_scalar)) "
        "select pg_catalog.count(*), pg_catalog.count(*), "
        "coalesce(pg_catalog.json_agg(_pgrst_call.pgrst_scalar), '[]')::text from _pgrst_call"
    ).format(source)
