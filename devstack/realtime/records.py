"""Row values from the WAL's text form to the JSON Realtime sends: `to_jsonb(value::type)`.

Realtime casts every value in SQL (`realtime.cast`). The common types are converted here the way
to_jsonb renders them (numbers, booleans, parsed json, ISO timestamps with a `T`); any other type
(arrays, composites, ranges, domains of those) is cast by the database itself, so no type is
ever sent in a shape Realtime would not send.
"""

from __future__ import annotations

import json
import re
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

BOOL, INT8, INT2, INT4, OID, FLOAT4, FLOAT8, NUMERIC = 16, 20, 21, 23, 26, 700, 701, 1700
JSON_TYPES = (114, 3802)
TIMESTAMP, TIMESTAMPTZ = 1114, 1184
# text, varchar, bpchar, name, char, uuid, date, time, timetz, interval, inet, cidr, macaddr, xml, bit, varbit, money
AS_STRING = {25, 1043, 1042, 19, 18, 2950, 1082, 1083, 1266, 1186, 869, 650, 829, 142, 1560, 1562, 790}
_TZ_HOURS_ONLY = re.compile(r"([+-]\d\d)$")


class NeedsDatabase(Exception):
    """This type is cast by the database, as Realtime casts every type."""


def to_json_value(type_oid: int, text: str | None) -> Any:
    """One value as to_jsonb renders it; NeedsDatabase for types not converted here."""
    if text is None:
        return None
    if type_oid == BOOL:
        return text == "t"
    if type_oid in (INT2, INT4, INT8, OID):
        return int(text)
    if type_oid in (FLOAT4, FLOAT8, NUMERIC):
        try:
            return json.loads(text, parse_constant=_not_a_number)  # exact digits, as to_jsonb keeps them
        except ValueError:
            return text  # NaN, Infinity: to_jsonb gives strings
    if type_oid in JSON_TYPES:
        return json.loads(text)
    if type_oid in (TIMESTAMP, TIMESTAMPTZ):
        if text in ("infinity", "-infinity"):
            return text
        iso = text.replace(" ", "T", 1)
        return _TZ_HOURS_ONLY.sub(r"\1:00", iso) if type_oid == TIMESTAMPTZ else iso
    if type_oid in AS_STRING:
        return text
    raise NeedsDatabase(type_oid)


def _not_a_number(text: str) -> Any:
    raise ValueError(text)


async def json_values(pool: AsyncConnectionPool, types: dict[str, int], values: dict[str, str | None]) -> dict[str, Any]:
    """Every value of a row as JSON; the few types not converted here cost one query per value."""
    converted: dict[str, Any] = {}
    for name, text in values.items():
        type_oid = types[name]
        try:
            converted[name] = to_json_value(type_oid, text)
        except NeedsDatabase:
            async with pool.connection() as conn:
                converted[name] = await _cast_in_database(conn, type_oid, text)
    return converted


async def _cast_in_database(conn: AsyncConnection[Any], type_oid: int, text: str | None) -> Any:
    type_name = await _type_name(conn, type_oid)
    cursor = await conn.execute(sql.SQL("select to_jsonb(%s::text::{})").format(sql.SQL(type_name)), (text,))
    row = await cursor.fetchone()
    return row[0] if row else None


_type_names: dict[tuple[str, int, int], str] = {}


async def _type_name(conn: AsyncConnection[Any], type_oid: int) -> str:
    """The SQL spelling of a type (quoted, schema-qualified where needed), from its oid."""
    key = (conn.info.host, conn.info.port, type_oid)  # oids of user types differ between servers
    if key not in _type_names:
        cursor = await conn.execute("select format_type(%s, null)", (type_oid,))
        row = await cursor.fetchone()
        assert row is not None
        _type_names[key] = str(row[0])
    return _type_names[key]
