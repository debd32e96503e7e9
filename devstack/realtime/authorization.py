"""Row-level security decides what each subscriber receives, checked the way Realtime checks it.

Postgres changes (`realtime.apply_rls`): for an INSERT or UPDATE on a table with RLS, the row is
looked up by its primary key as the subscriber's role with their JWT claims in
`request.jwt.claims`; a subscriber who cannot see it gets nothing. The columns sent are those
the role may SELECT. DELETE skips the check, so on an RLS table its `old_record` carries only
the key. Subscribers with the same role and claims share one check.

Private channels (`Realtime.Tenants.Authorization`): in a transaction that is rolled back,
probe rows are inserted into realtime.messages for the topic and read back as the subscriber
with `realtime.topic` set; the policies decide. Writing is an insert as the subscriber; 42501
means no.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from devstack.realtime.bindings import BindingError, Filter, PostgresBinding, describe
from devstack.realtime.tokens import Identity

PUBLICATION = "supabase_realtime"


@dataclass(frozen=True)
class TableColumn:
    name: str
    type_name: str  # pg_type.typname, as Realtime's `columns` carry it
    sql_type: str  # format_type(), for casting a key value back
    is_pkey: bool


@dataclass(frozen=True)
class TableView:
    """What one role may see of a table right now: its columns, key and whether RLS applies."""

    schema: str
    table: str
    rls_enabled: bool
    columns: tuple[TableColumn, ...]  # only the columns the role may select, in table order
    primary_key: tuple[TableColumn, ...]  # all key columns, selectable or not
    sql_types: dict[str, str]  # every column's type, for comparing filters in SQL

    @property
    def selectable(self) -> set[str]:
        return {column.name for column in self.columns}


def _set_identity(identity: Identity, topic: str | None = None) -> tuple[sql.SQL, tuple[str, ...]]:
    claims = json.dumps(identity.claims)
    query = "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)," \
            " set_config('request.jwt.claim.sub', %s, true), set_config('realtime.topic', %s, true)"
    return sql.SQL(query), (identity.role, claims, str(identity.claims.get("sub") or ""), topic or "")


class Authorizer:
    """The RLS checks, over a pool of connections allowed to switch into any API role."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def check_binding(self, binding: PostgresBinding, identity: Identity) -> None:
        """Refuse what Realtime refuses: tables outside the publication, filters it cannot apply."""
        error = BindingError(
            "Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the"
            f" given connect parameters: {describe(binding)}"
        )
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "select exists(select 1 from pg_publication_tables where pubname = %s and schemaname = %s"
                " and (%s::text is null or %s::text = '*' or tablename = %s))",
                (PUBLICATION, binding.schema, binding.table, binding.table, binding.table),
            )
            row = await cursor.fetchone()
            if not (row and row[0]):
                raise error
            if binding.filter is None:
                return
            if binding.table in (None, "*"):
                raise BindingError(f"{error}: a filter needs a table")
            await self._check_filter(conn, binding, identity, binding.filter, error)

    async def _check_filter(
        self, conn: psycopg.AsyncConnection[Any], binding: PostgresBinding, identity: Identity, filter_: Filter,
        error: BindingError,
    ) -> None:
        cursor = await conn.execute(
            "select format_type(a.atttypid, a.atttypmod), has_column_privilege(%s, a.attrelid, a.attname, 'SELECT')"
            " from pg_attribute a where a.attrelid = to_regclass(format('%%I.%%I', %s::text, %s::text))"
            " and a.attname = %s and a.attnum > 0 and not a.attisdropped",
            (identity.role, binding.schema, binding.table, filter_.column),
        )
        row = await cursor.fetchone()
        if row is None or not row[1]:
            raise BindingError(f"{error}: invalid column for filter {filter_.column}")
        cast_type = f"{row[0]}[]" if filter_.op == "in" else str(row[0])
        try:
            async with conn.transaction(force_rollback=True):
                await conn.execute(sql.SQL("select %s::text::{}").format(sql.SQL(cast_type)), (filter_.value,))
        except psycopg.Error:
            raise BindingError(f"{error}: invalid value for filter {filter_}") from None

    async def table_views(self, relation_oid: int, roles: Iterable[str]) -> dict[str, TableView]:
        """Per role: the columns it may select, the primary key and whether RLS is on."""
        roles = sorted(set(roles))
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "select r.role, n.nspname, c.relname, c.relrowsecurity, a.attname, t.typname,"
                " format_type(a.atttypid, a.atttypmod), coalesce(a.attnum = any(i.indkey), false),"
                " has_column_privilege(r.role, c.oid, a.attname, 'SELECT')"
                " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                " join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped"
                " join pg_type t on t.oid = a.atttypid"
                " left join pg_index i on i.indrelid = c.oid and i.indisprimary"
                " cross join unnest(%s::text[]) as r(role)"
                " where c.oid = %s order by r.role, a.attnum",
                (roles, relation_oid),
            )
            rows = await cursor.fetchall()
        views: dict[str, TableView] = {}
        for role in roles:
            mine = [row for row in rows if row[0] == role]
            if not mine:
                continue
            columns = [TableColumn(row[4], row[5], row[6], row[7]) for row in mine]
            selectable = tuple(column for column, row in zip(columns, mine, strict=True) if row[8])
            views[role] = TableView(mine[0][1], mine[0][2], mine[0][3], selectable,
                                    tuple(column for column in columns if column.is_pkey),
                                    {column.name: column.sql_type for column in columns})
        return views

    async def rows_visible(
        self, view: TableView, key: dict[str, str | None], identities: list[Identity]
    ) -> list[bool]:
        """Whether each identity can SELECT the row with this primary key, in one round trip."""
        if not view.primary_key or any(key.get(column.name) is None for column in view.primary_key):
            return [False] * len(identities)
        where = sql.SQL(" and ").join(
            sql.SQL("{} = %s::text::{}").format(sql.Identifier(column.name), sql.SQL(column.sql_type))
            for column in view.primary_key
        )
        exists = sql.SQL("select exists(select 1 from {}.{} where {})").format(
            sql.Identifier(view.schema), sql.Identifier(view.table), where
        )
        key_params = tuple(key[column.name] for column in view.primary_key)
        async with self.pool.connection() as conn, conn.transaction(force_rollback=True):
            cursors = []
            async with conn.pipeline():
                for identity in identities:
                    set_query, set_params = _set_identity(identity)
                    await conn.execute(set_query, set_params)
                    cursors.append(await conn.execute(exists, key_params))
            results = []
            for cursor in cursors:
                row = await cursor.fetchone()
                results.append(bool(row and row[0]))
            return results

    async def filters_pass(self, column_types: dict[str, str], values: dict[str, str | None],
                           filters: Iterable[Filter]) -> dict[Filter, bool]:
        """Each filter against a row, compared in the database after casting to the column's type;
        NULL never matches, nor does a column the row does not carry."""
        outcome: dict[Filter, bool] = {}
        checks: list[tuple[Filter, sql.Composable, tuple[Any, ...]]] = []
        for filter_ in set(filters):
            value = values.get(filter_.column)
            type_name = column_types.get(filter_.column)
            if value is None or type_name is None:
                outcome[filter_] = False
                continue
            right = f"{type_name}[]" if filter_.op == "in" else type_name
            operator = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}.get(filter_.op)
            expression = (
                sql.SQL("%s::text::{} = any(%s::text::{})").format(sql.SQL(type_name), sql.SQL(right))
                if operator is None
                else sql.SQL("%s::text::{} " + operator + " %s::text::{}").format(sql.SQL(type_name), sql.SQL(right))
            )
            checks.append((filter_, expression, (value, filter_.value)))
        if checks:
            query = sql.SQL("select ") + sql.SQL(", ").join(sql.SQL("coalesce({}, false)").format(e) for _, e, _ in checks)
            params = tuple(param for _, _, pair in checks for param in pair)
            async with self.pool.connection() as conn:
                cursor = await conn.execute(query, params)
                row = await cursor.fetchone()
            assert row is not None
            outcome.update({filter_: bool(passed) for (filter_, _, _), passed in zip(checks, row, strict=False)})
        return outcome

    async def can_read_topic(self, identity: Identity, topic: str) -> bool:
        """A private channel's read permission: does RLS let the subscriber see a broadcast probe?"""
        async with self.pool.connection() as conn, conn.transaction(force_rollback=True):
            cursor = await conn.execute(
                "insert into realtime.messages (topic, extension) values (%s, 'broadcast'), (%s, 'presence')"
                " returning id, extension",
                (topic, topic),
            )
            probes = {row[1]: row[0] for row in await cursor.fetchall()}
            set_query, set_params = _set_identity(identity, topic)
            await conn.execute(set_query, set_params)
            cursor = await conn.execute(
                "select id from realtime.messages where topic = %s and extension = 'broadcast' and id = %s",
                (topic, probes["broadcast"]),
            )
            return await cursor.fetchone() is not None

    async def can_write_topic(self, identity: Identity, topic: str) -> bool:
        """A private channel's write permission: may the subscriber insert a broadcast row?"""
        async with self.pool.connection() as conn, conn.transaction(force_rollback=True):
            set_query, set_params = _set_identity(identity, topic)
            await conn.execute(set_query, set_params)
            try:
                async with conn.transaction():
                    await conn.execute(
                        "insert into realtime.messages (topic, extension) values (%s, 'broadcast')", (topic,)
                    )
            except psycopg.errors.InsufficientPrivilege:
                return False
            return True
