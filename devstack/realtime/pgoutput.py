"""A decoder for pgoutput, PostgreSQL's built-in logical replication output plugin (protocol 1).

Each call to `pg_logical_slot_get_binary_changes(..., 'proto_version', '1', 'publication_names',
...)` returns one message per row; this turns them into committed transactions of row changes.
Only what the Realtime stand-in needs is kept: Relation (column names, type oids, which columns
form the replica identity), Begin (commit timestamp), Insert, Update, Delete and Commit. Tuple
values arrive in their text form; 'u' (an unchanged TOASTed value) is reported as absent, as
Realtime reports it.
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass, field

POSTGRES_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)


class DecodeError(ValueError):
    """A message this decoder does not understand: the stream cannot be trusted past it."""


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    is_key: bool


@dataclass(frozen=True)
class Relation:
    oid: int
    schema: str
    table: str
    replica_identity: str  # 'd' default, 'n' nothing, 'f' full, 'i' index
    columns: tuple[Column, ...]


Values = dict[str, str | None]


@dataclass(frozen=True)
class RowChange:
    """One row's change. `new` for INSERT and UPDATE; `old` is what the WAL carries for UPDATE and
    DELETE under the table's REPLICA IDENTITY (key columns, every column, or nothing)."""

    relation: Relation
    type: str  # INSERT, UPDATE, DELETE
    new: Values | None
    old: Values | None


@dataclass
class Transaction:
    xid: int
    commit_time: dt.datetime
    changes: list[RowChange] = field(default_factory=list)


class PgOutputDecoder:
    """Stateful across calls: Relation messages are sent once per decoding session and reused."""

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}
        self._open: Transaction | None = None

    def feed(self, data: bytes) -> Transaction | None:
        """Decode one message; return the transaction it completes, if it is a Commit."""
        kind = data[:1]
        if kind == b"B":
            _final_lsn, commit_us, xid = struct.unpack_from("!QqI", data, 1)
            self._open = Transaction(xid, POSTGRES_EPOCH + dt.timedelta(microseconds=commit_us))
        elif kind == b"C":
            done, self._open = self._open, None
            return done
        elif kind == b"R":
            relation = _relation(data)
            self.relations[relation.oid] = relation
        elif kind in (b"I", b"U", b"D"):
            change = self._row_change(kind, data)
            if self._open is None:
                raise DecodeError("row change outside a transaction")
            self._open.changes.append(change)
        elif kind in (b"Y", b"O", b"T", b"M"):
            pass  # types, origins, truncates and logical messages: Realtime sends none of them
        else:
            raise DecodeError(f"unknown pgoutput message {kind!r}")
        return None

    def _row_change(self, kind: bytes, data: bytes) -> RowChange:
        (relid,) = struct.unpack_from("!I", data, 1)
        relation = self.relations.get(relid)
        if relation is None:
            raise DecodeError(f"change for relation {relid} before its Relation message")
        offset = 5
        old: Values | None = None
        new: Values | None = None
        while offset < len(data):
            marker = data[offset:offset + 1]
            values, offset = _tuple(data, offset + 1, relation)
            if marker == b"N":
                new = values
            elif marker == b"K":  # the replica identity's key: the other columns are sent as nulls
                keys = {column.name for column in relation.columns if column.is_key}
                old = {name: value for name, value in values.items() if name in keys}
            elif marker == b"O":
                old = values
            else:
                raise DecodeError(f"unknown tuple marker {marker!r}")
        type_ = {b"I": "INSERT", b"U": "UPDATE", b"D": "DELETE"}[kind]
        return RowChange(relation, type_, new, old)


def _cstring(data: bytes, offset: int) -> tuple[str, int]:
    end = data.index(b"\0", offset)
    return data[offset:end].decode(), end + 1


def _relation(data: bytes) -> Relation:
    (oid,) = struct.unpack_from("!I", data, 1)
    schema, offset = _cstring(data, 5)
    table, offset = _cstring(data, offset)
    identity = chr(data[offset])
    (ncols,) = struct.unpack_from("!H", data, offset + 1)
    offset += 3
    columns = []
    for _ in range(ncols):
        flags = data[offset]
        name, offset = _cstring(data, offset + 1)
        type_oid, _typmod = struct.unpack_from("!Ii", data, offset)
        offset += 8
        columns.append(Column(name, type_oid, bool(flags & 1)))
    return Relation(oid, schema, table, identity, tuple(columns))


def _tuple(data: bytes, offset: int, relation: Relation) -> tuple[Values, int]:
    (ncols,) = struct.unpack_from("!H", data, offset)
    offset += 2
    values: Values = {}
    for index in range(ncols):
        kind = data[offset:offset + 1]
        offset += 1
        name = relation.columns[index].name
        if kind == b"n":
            values[name] = None
        elif kind == b"u":
            continue
        elif kind == b"t":
            (length,) = struct.unpack_from("!I", data, offset)
            offset += 4
            values[name] = data[offset:offset + length].decode()
            offset += length
        else:
            raise DecodeError(f"unknown tuple value kind {kind!r}")
    return values, offset
