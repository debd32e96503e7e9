"""Joined channels and who receives what: broadcast fan-out, presence, and Postgres changes.

Everything here runs on the gateway's event loop; sockets are written through their outboxes,
so one slow subscriber never holds up another. Public and private channels with the same topic
are separate namespaces, as on Supabase.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

from devstack.realtime.authorization import Authorizer, TableView
from devstack.realtime.bindings import PostgresBinding
from devstack.realtime.frames import Encoded, Frame, FrameError, Serializer, UserBroadcast
from devstack.realtime.pgoutput import RowChange, Transaction
from devstack.realtime.records import json_values
from devstack.realtime.tokens import Identity

_presence_refs = itertools.count(1)


class Outbox(Protocol):
    """A subscriber's socket, as the fan-out sees it: its framing and a non-blocking send."""

    serializer: Serializer

    def push(self, message: Encoded) -> None: ...


@dataclass(eq=False)
class Channel:
    """One joined channel on one socket."""

    outbox: Outbox
    topic: str  # as the client names it: realtime:<sub_topic>
    sub_topic: str
    join_ref: str | None
    identity: Identity
    private: bool = False
    broadcast_self: bool = False
    broadcast_ack: bool = False
    presence_key: str = ""
    presence_enabled: bool = False
    bindings: list[PostgresBinding] = field(default_factory=list)
    can_write: bool | None = None  # private channels: decided at the first send, reset on a new token
    presence_meta: dict[str, Any] | None = None
    expiry: asyncio.TimerHandle | None = None  # closes the channel when its token expires

    def send(self, event: str, payload: Any, *, ref: str | None = None, own: bool = True) -> None:
        """A frame on this channel; `own` frames carry the join_ref, fan-out frames carry null."""
        frame = Frame(self.topic, event, payload, ref, self.join_ref if own else None)
        self.outbox.push(self.outbox.serializer.encode(frame))

    def send_broadcast(self, event: str, payload: Any, meta: dict[str, Any]) -> None:
        try:
            message = self.outbox.serializer.encode_broadcast(UserBroadcast(self.topic, event, payload, meta))
        except (FrameError, TypeError, ValueError):
            return  # a binary payload cannot reach a vsn 1.0.0 client; Realtime drops it too
        self.outbox.push(message)


class Hub:
    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer
        self.channels: set[Channel] = set()
        self._by_topic: dict[tuple[str, bool], set[Channel]] = defaultdict(set)

    # ------------------------------------------------------------------ membership
    def add(self, channel: Channel) -> None:
        self.channels.add(channel)
        self._by_topic[(channel.sub_topic, channel.private)].add(channel)

    def remove(self, channel: Channel) -> None:
        """The channel is gone; the members left on its topic hear that its presence left."""
        if channel.expiry is not None:
            channel.expiry.cancel()
        self.channels.discard(channel)
        members = self._by_topic.get((channel.sub_topic, channel.private))
        if members is not None:
            members.discard(channel)
            if not members:
                del self._by_topic[(channel.sub_topic, channel.private)]
        self.untrack(channel)

    def members(self, sub_topic: str, private: bool) -> list[Channel]:
        return list(self._by_topic.get((sub_topic, private), ()))

    @property
    def wants_changes(self) -> bool:
        return bool(self.channels)

    # ------------------------------------------------------------------ broadcast
    def broadcast(
        self, sub_topic: str, private: bool, event: str, payload: Any, *,
        sender: Channel | None = None, meta: dict[str, Any] | None = None,
    ) -> int:
        """Deliver to every channel on the topic (the sender only with `self: true`); returns how many."""
        delivered = 0
        for channel in self.members(sub_topic, private):
            if channel is sender and not channel.broadcast_self:
                continue
            channel.send_broadcast(event, payload, meta or {})
            delivered += 1
        return delivered

    # ------------------------------------------------------------------ presence
    def presence_state(self, sub_topic: str, private: bool) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for channel in self.members(sub_topic, private):
            if channel.presence_meta is not None:
                state.setdefault(channel.presence_key, {"metas": []})["metas"].append(channel.presence_meta)
        return state

    def track(self, channel: Channel, payload: dict[str, Any]) -> None:
        leaves = self._leaves(channel)
        channel.presence_meta = {**payload, "phx_ref": f"F{next(_presence_refs)}"}
        self._presence_diff(channel, {channel.presence_key: {"metas": [channel.presence_meta]}}, leaves)

    def untrack(self, channel: Channel) -> None:
        leaves = self._leaves(channel)
        channel.presence_meta = None
        if leaves:
            self._presence_diff(channel, {}, leaves)

    def _leaves(self, channel: Channel) -> dict[str, Any]:
        return {channel.presence_key: {"metas": [channel.presence_meta]}} if channel.presence_meta else {}

    def _presence_diff(self, source: Channel, joins: dict[str, Any], leaves: dict[str, Any]) -> None:
        """To every member that enabled presence (a channel tracks whether or not it listens)."""
        for channel in self.members(source.sub_topic, source.private):
            if channel.presence_enabled:
                channel.send("presence_diff", {"joins": joins, "leaves": leaves}, own=False)

    # ------------------------------------------------------------------ from the database
    async def deliver_transaction(self, transaction: Transaction) -> None:
        """A committed transaction's changes, in the order they were made."""
        commit_timestamp = transaction.commit_time.strftime("%Y-%m-%dT%H:%M:%S.") + \
            f"{transaction.commit_time.microsecond // 1000:03d}Z"
        for change in transaction.changes:
            relation = change.relation
            if (relation.schema, relation.table) == ("realtime", "messages"):
                self._broadcast_from_database(change)
            else:
                await self._deliver_change(change, commit_timestamp)

    def _broadcast_from_database(self, change: RowChange) -> None:
        row = change.new
        if change.type != "INSERT" or row is None or row.get("extension") != "broadcast" or row.get("topic") is None:
            return
        try:
            text = row.get("payload")
            payload = json.loads(text) if text is not None else {}
        except ValueError:
            return
        self.broadcast(str(row["topic"]), row.get("private") == "t", str(row.get("event") or ""), payload,
                       meta={"id": row.get("id") or str(uuid.uuid4())})

    async def _deliver_change(self, change: RowChange, commit_timestamp: str) -> None:
        relation = change.relation
        candidates = [
            (channel, wanted)
            for channel in list(self.channels)
            if (wanted := [b for b in channel.bindings if b.wants(relation.schema, relation.table, change.type)])
        ]
        if not candidates:
            return
        views = await self.authorizer.table_views(relation.oid, {channel.identity.role for channel, _ in candidates})
        if not views:
            return  # the table is gone
        any_view = next(iter(views.values()))
        new = change.new or {}
        old = change.old
        if old is None and change.type == "UPDATE" and relation.replica_identity in ("d", "i"):
            # The key did not change, so the WAL has no old tuple: the key is the new row's.
            keys = {column.name for column in relation.columns if column.is_key}
            old = {name: value for name, value in new.items() if name in keys}
        old = old or {}
        compared = old if change.type == "DELETE" else new
        filters = [b.filter for _, wanted in candidates for b in wanted if b.filter is not None]
        passes = await self.authorizer.filters_pass(any_view.sql_types, compared, filters) if filters else {}
        matched = [
            (channel, ids)
            for channel, wanted in candidates
            if (ids := [b.id for b in wanted if b.filter is None or passes.get(b.filter, False)])
        ]
        if not matched:
            return
        types = {column.name: column.type_oid for column in relation.columns}
        new_json = await json_values(self.authorizer.pool, types, new)
        old_json = await json_values(self.authorizer.pool, types, old)
        by_role: dict[str, list[list[tuple[Channel, list[int]]]]] = defaultdict(list)
        for group in _by_identity(matched).values():
            by_role[group[0][0].identity.role].append(group)
        for role, groups in by_role.items():
            view = views.get(role)
            if view is None:
                continue
            if view.rls_enabled and change.type != "DELETE":
                visible = await self.authorizer.rows_visible(view, new, [group[0][0].identity for group in groups])
                groups = [group for group, seen in zip(groups, visible, strict=True) if seen]
            if not groups:
                continue
            data = _change_payload(change.type, view, commit_timestamp, new_json, old_json)
            for group in groups:
                for channel, ids in group:
                    channel.send("postgres_changes", {"ids": ids, "data": data}, own=False)


def _by_identity(matched: list[tuple[Channel, list[int]]]) -> dict[tuple[str, str], list[tuple[Channel, list[int]]]]:
    """Subscribers with the same role and claims see the same rows: one RLS check serves them all."""
    groups: dict[tuple[str, str], list[tuple[Channel, list[int]]]] = defaultdict(list)
    for channel, ids in matched:
        key = (channel.identity.role, json.dumps(channel.identity.claims, sort_keys=True))
        groups[key].append((channel, ids))
    return groups


def _change_payload(
    type_: str, view: TableView, commit_timestamp: str, new: dict[str, Any], old: dict[str, Any]
) -> dict[str, Any]:
    """`data` of a postgres_changes frame as `realtime.apply_rls` builds it for one role."""
    selectable = view.selectable
    data: dict[str, Any] = {
        "schema": view.schema,
        "table": view.table,
        "commit_timestamp": commit_timestamp,
        "type": type_,
        "columns": [{"name": column.name, "type": column.type_name} for column in view.columns],
        "errors": None,
    }
    visible_old = {name: value for name, value in old.items() if name in selectable}
    if type_ in ("INSERT", "UPDATE"):
        # A TOASTed value the update left alone is missing from the new tuple: take the old one.
        data["record"] = {**visible_old, **{name: value for name, value in new.items() if name in selectable}}
    if type_ == "UPDATE":
        data["old_record"] = visible_old
    elif type_ == "DELETE":
        keys = {column.name for column in view.primary_key}
        data["old_record"] = {
            name: value for name, value in visible_old.items() if not view.rls_enabled or name in keys
        }
    return data
