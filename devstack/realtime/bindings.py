"""A channel's `postgres_changes` bindings: what a client asked for, parsed as Realtime parses it.

A binding is `{event, schema, table?, filter?}`; the join reply must echo each binding verbatim,
in order, with a non-zero integer id, or both clients treat the subscription as failed. Filters
are PostgREST-style `column=op.value` with eq, neq, lt, lte, gt, gte and `in.(a,b,...)` (at most
100 values); the comparison itself happens in the database, after casting to the column's type.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

EVENTS = ("*", "INSERT", "UPDATE", "DELETE")
OPERATORS = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "in": "= any"}
MAX_IN_VALUES = 100
_FILTER = re.compile(r"^(?P<column>[^=]+)=(?P<op>[a-z]+)\.(?P<value>.*)$", re.DOTALL)
_ids = itertools.count(1)


class BindingError(ValueError):
    """The binding cannot be subscribed; the message names what is wrong."""


@dataclass(frozen=True)
class Filter:
    column: str
    op: str
    value: str  # for `in`, a Postgres array literal: {a,b}

    def __str__(self) -> str:
        return f"{self.column}={self.op}.{self.value}"


@dataclass(frozen=True)
class PostgresBinding:
    """One subscription of one channel. `echo` is exactly what the client sent, for the reply."""

    id: int
    event: str
    schema: str
    table: str | None
    filter: Filter | None
    echo: dict[str, Any]

    def wants(self, schema: str, table: str, event: str) -> bool:
        return (
            self.schema == schema
            and (self.table is None or self.table == "*" or self.table == table)
            and self.event in ("*", event)
        )

    def reply(self) -> dict[str, Any]:
        return {**self.echo, "id": self.id}


def parse_bindings(raw: Any) -> list[PostgresBinding]:
    """The bindings of a join's `config.postgres_changes`; BindingError for any malformed one."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BindingError("config.postgres_changes must be a list")
    return [parse_binding(item) for item in raw]


def parse_binding(raw: Any) -> PostgresBinding:
    if not isinstance(raw, dict):
        raise BindingError("each postgres_changes binding must be an object")
    event = raw.get("event", "*")
    if not isinstance(event, str) or event.upper() not in EVENTS:
        raise BindingError(f"event must be one of {', '.join(EVENTS)}")
    schema = raw.get("schema", "public")
    table = raw.get("table")
    if not isinstance(schema, str) or not schema or (table is not None and not isinstance(table, str)):
        raise BindingError("schema and table must be strings")
    filter_text = raw.get("filter")
    parsed_filter = parse_filter(filter_text) if filter_text not in (None, "") else None
    return PostgresBinding(next(_ids), event.upper(), schema, table, parsed_filter, dict(raw))


def parse_filter(text: Any) -> Filter:
    if not isinstance(text, str):
        raise BindingError("filter must be a string such as id=eq.1")
    match = _FILTER.match(text)
    if match is None or match["op"] not in OPERATORS:
        raise BindingError(f"invalid filter {text!r}: use column=op.value with op one of {', '.join(OPERATORS)}")
    column, op, value = match["column"].strip(), match["op"], match["value"]
    if op == "in":
        if not (value.startswith("(") and value.endswith(")")):
            raise BindingError(f"invalid filter {text!r}: `in` takes a list such as in.(1,2)")
        items = [item.strip() for item in value[1:-1].split(",")] if value[1:-1].strip() else []
        if len(items) > MAX_IN_VALUES:
            raise BindingError(f"too many values for `in` filter. Maximum {MAX_IN_VALUES}")
        value = "{" + ",".join(_array_item(item) for item in items) + "}"
    return Filter(column, op, value)


def _array_item(item: str) -> str:
    """One element of a Postgres array literal, quoted so commas and braces stay literal."""
    return '"' + item.strip('"').replace("\\", "\\\\").replace('"', '\\"') + '"'


def describe(binding: PostgresBinding) -> str:
    """How Realtime names a binding in its error message."""
    filters = f"[{binding.filter}]" if binding.filter else "[]"
    return f"[event: {binding.event}, schema: {binding.schema}, table: {binding.table or '*'}, filters: {filters}]"
