"""PostgREST's URL grammar (select, filters, and/or trees, order, limit/offset, Range) as SQL.

Everything a client sends ends up either in a psycopg `sql.Identifier` or in a bind parameter;
the only SQL text spliced in verbatim is the fixed vocabulary of this module and what the
system catalog itself says (column defaults, argument types), never request text. Values are
bound untyped (psycopg sends `str` with the unknown OID), so Postgres infers the column's type
exactly as it does for PostgREST, and a bad value is Postgres' own 22P02, not ours.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

from psycopg import sql


class ApiError(Exception):
    """An error answer in PostgREST's shape: {"code", "details", "hint", "message"}."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: str | None = None,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.hint, self.headers = details, hint, headers or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "details": self.details, "hint": self.hint, "message": self.message}


def parse_error(what: str, text: str, details: str) -> ApiError:
    """PGRST100, worded like PostgREST's parser errors so a log line reads the same."""
    return ApiError(400, "PGRST100", f'"failed to parse {what} ({text})" (line 1, column 1)', details)


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


Condition = Union[Filter, Logic]


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
RESERVED_PARAMS = {"select", "order", "limit", "offset", "on_conflict", "columns", "and", "or", "not.and", "not.or"}

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
            alias, column = unquote(match.group(1)), match.group(2)
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


def parse_logic(key: str, value: str) -> Logic:
    """`or=(a.eq.1,and(b.gt.2,c.is.null))`, `not.and=(...)`: PostgREST's logic trees."""
    negated = key.startswith("not.")
    conjunction = key.removeprefix("not.") if hasattr(key, "removeprefix") else key[4:] if negated else key
    if not (value.startswith("(") and value.endswith(")")) or value == "()":
        raise parse_error("logic tree", value, "expecting (condition,...)")
    children: list[Condition] = []
    for raw in split_top_level(value[1:-1]):
        part = raw.strip()
        nested = re.match(r"^(not\.)?(and|or)(\(.*\))$", part, re.DOTALL)
        if nested:
            children.append(parse_logic((nested.group(1) or "") + nested.group(2), nested.group(3)))
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


def parse_read_plan(params: list[tuple[str, str]], skip: frozenset[str] = frozenset()) -> ReadPlan:
    """The read half of a query string; `skip` names params consumed elsewhere (rpc args)."""
    values = dict(params)
    conditions: list[Condition] = []
    for key, value in params:
        if key in skip or key in ("select", "order", "limit", "offset", "on_conflict", "columns"):
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
    if f.operator == "in":
        if not f.value:
            return sql.SQL("false")
        return sql.SQL("{} in ({})").format(column, sql.SQL(", ").join(bind(v) for v in f.value))
    assert isinstance(f.value, str)
    if f.operator == "is":
        return sql.SQL("({} {})").format(column, sql.SQL(IS_VALUES[f.value.lower()]))
    if f.operator in FTS_FUNCTIONS:
        function = sql.SQL("pg_catalog." + FTS_FUNCTIONS[f.operator])
        args = [bind(f.language), bind(f.value)] if f.language else [bind(f.value)]
        if f.language:
            args[0] = sql.SQL("{}::regconfig").format(args[0])
        return sql.SQL("{} @@ {}({})").format(column, function, sql.SQL(", ").join(args))
    value = f.value.replace("*", "%") if f.operator in ("like", "ilike") else f.value
    return sql.SQL("{} {} {}").format(column, sql.SQL(OPERATORS[f.operator]), bind(value))


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
    prelude: sql.Composable = sql.SQL(""),
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


Renderer = Callable[[Condition, sql.Composable, Binder], sql.Composable]
