"""State resolution: v1 (room v1), v2 (rooms v2-v11) and v2.1 (room v12).

What this implements
--------------------
Given several room states (maps ``(type, state_key) -> event_id``) that meet
where the DAG merges, compute the one state that follows them. The algorithms
are the "State resolution" sections of the Matrix specification v1.19:
``content/rooms/v1.md`` (v1), ``content/rooms/fragments/v2-state-res.md`` (v2)
and ``content/rooms/v12.md`` (v2.1: the conflicted state subgraph joins the
full conflicted set, and the first iterative auth checks start from the empty
state instead of the unconflicted state map).

Theory of operation
-------------------
Resolution needs one lookup, ``store.get_event(event_id) -> Event`` (raising
``KeyError`` for an unknown event), described by :class:`StateResolutionStore`.
Everything else - auth chains, the conflicted subgraph, sender power levels,
mainline positions - is computed here from ``Event.auth_event_ids()`` and
memoised for the duration of one call, so each event is fetched once and each
walk over the auth DAG is linear. Events the store does not know are left out
(of auth chains and of the conflicted set), as Synapse does.

Room version 12 does not list the create event in ``auth_events``; the room
ID names it. Resolution treats it as an auth edge of every other event of the
room (so it is in every auth chain and available to the auth rules), which is
also what Synapse does.

Rules the file keeps
--------------------
* Deterministic: the result depends only on the *set* of state maps and the
  events; every ordering used is a total order ending in the event ID.
* Where the spec and Synapse differ, the spec wins; where the spec is silent,
  Synapse's behaviour is kept. Choices are marked "spec:" / "Synapse:".
* Authorisation is :func:`homeserver.core.auth_rules.check_auth`, nothing else.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from homeserver.core.auth_rules import AuthError, auth_types_for_event, check_auth
from homeserver.core.events import Event, StateKey
from homeserver.core.power_levels import CREATE_KEY, POWER_LEVELS_KEY, get_user_power_level
from homeserver.core.room_versions import RoomVersion, StateResAlgorithm

__all__ = [
    "AuthChainCalculator",
    "StateResolutionStore",
    "resolve_state_groups",
]

JOIN_RULES_KEY: StateKey = ("m.room.join_rules", "")


class StateResolutionStore(Protocol):
    """What resolution needs from storage: one event by ID (``KeyError`` if unknown)."""

    def get_event(self, event_id: str) -> Event: ...


def resolve_state_groups(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    store: StateResolutionStore,
) -> dict[StateKey, str]:
    """Resolve ``state_sets`` with the algorithm of ``room_version``."""
    if not state_sets:
        return {}
    if len(state_sets) == 1:
        return dict(state_sets[0])
    resolver = _Resolver(room_version, store)
    if room_version.state_res == StateResAlgorithm.V1:
        return resolver.resolve_v1(state_sets)
    return resolver.resolve_v2(state_sets, v2_1=room_version.state_res == StateResAlgorithm.V2_1)


# ---------------------------------------------------------------------------
# event access and auth chains


class AuthChainCalculator:
    """Fetches events (memoised) and walks the auth DAG.

    Usable on its own (e.g. for the ``/event_auth`` and ``/state_ids``
    federation endpoints): ``auth_chain(ids)`` is the set of events reachable
    from ``ids`` through auth edges, not including ``ids`` themselves.
    """

    def __init__(self, room_version: RoomVersion, store: StateResolutionStore) -> None:
        self.room_version = room_version
        self._store = store
        self._events: dict[str, Event | None] = {}
        self._edges: dict[str, tuple[str, ...]] = {}
        self._chains: dict[str, frozenset[str]] = {}

    def get(self, event_id: str) -> Event | None:
        if event_id not in self._events:
            try:
                self._events[event_id] = self._store.get_event(event_id)
            except KeyError:
                self._events[event_id] = None
        return self._events[event_id]

    def auth_edges(self, event_id: str) -> tuple[str, ...]:
        """The auth events of an event that the store knows (v12: plus the create event)."""
        edges = self._edges.get(event_id)
        if edges is None:
            event = self.get(event_id)
            if event is None:
                edges = ()
            else:
                ids = list(event.auth_event_ids())
                if self.room_version.room_id_from_create_event and event.type != "m.room.create":
                    room_id = event.room_id
                    if isinstance(room_id, str) and room_id.startswith("!"):
                        create_id = "$" + room_id[1:]
                        if create_id not in ids:
                            ids.append(create_id)
                edges = tuple(dict.fromkeys(a for a in ids if self.get(a) is not None))
            self._edges[event_id] = edges
        return edges

    def auth_chain(self, event_ids: Iterable[str]) -> set[str]:
        """Union of the auth chains of ``event_ids`` (one walk, linear in its size)."""
        seen: set[str] = set()
        stack = [a for e in event_ids for a in self.auth_edges(e)]
        while stack:
            eid = stack.pop()
            if eid in seen:
                continue
            seen.add(eid)
            if eid in self._chains:
                seen |= self._chains[eid]
                continue
            stack.extend(self.auth_edges(eid))
        return seen

    def auth_chain_of(self, event_id: str) -> frozenset[str]:
        """The auth chain of one event, memoised."""
        chain = self._chains.get(event_id)
        if chain is None:
            chain = frozenset(self.auth_chain([event_id]))
            self._chains[event_id] = chain
        return chain


class _Resolver(AuthChainCalculator):
    def __init__(self, room_version: RoomVersion, store: StateResolutionStore) -> None:
        super().__init__(room_version, store)
        self._sender_levels: dict[str, int | float] = {}
        self._pl_parent: dict[str, str | None] = {}

    # -- helpers --------------------------------------------------------------

    def _event(self, event_id: str) -> Event:
        event = self.get(event_id)
        assert event is not None, event_id
        return event

    def _auth_map_from_edges(self, event_id: str) -> dict[StateKey, Event]:
        """The event's own (known, not rejected) auth events by state key."""
        out: dict[StateKey, Event] = {}
        for aid in self.auth_edges(event_id):
            ae = self._event(aid)
            if ae.is_state and ae.rejected_reason is None:
                out[ae.state_tuple] = ae
        return out

    def _auth_map_for(self, event: Event, state: Mapping[StateKey, str]) -> dict[StateKey, Event]:
        """Auth events for checking ``event`` against ``state``: the state's
        entries for the selected keys, else the event's own auth events."""
        auth_map = self._auth_map_from_edges(event.event_id)
        keys = auth_types_for_event(
            self.room_version, event.type, event.sender, event.state_key, event.content
        )
        for key in [CREATE_KEY, *keys]:
            sid = state.get(key)
            if sid is None:
                continue
            se = self.get(sid)
            if se is not None and se.rejected_reason is None:
                auth_map[key] = se
        # Only what the selection algorithm (plus the create event) names.
        allowed = {CREATE_KEY, *keys}
        return {k: v for k, v in auth_map.items() if k in allowed}

    def _allowed(self, event: Event, state: Mapping[StateKey, str]) -> bool:
        try:
            check_auth(self.room_version, event, self._auth_map_for(event, state))
        except AuthError:
            return False
        return True

    # -- v2 / v2.1 -------------------------------------------------------------

    def resolve_v2(self, state_sets: Sequence[Mapping[StateKey, str]], *, v2_1: bool) -> dict[StateKey, str]:
        unconflicted, conflicted = _split_v2(state_sets)
        if not conflicted:
            return unconflicted

        conflicted_ids = {eid for ids in conflicted.values() for eid in ids if self.get(eid) is not None}
        full = conflicted_ids | self._auth_difference(state_sets)
        if v2_1:
            full |= self._conflicted_subgraph(conflicted_ids)

        power = [eid for eid in full if _is_power_event(self._event(eid))]
        sorted_power = self._reverse_topological_power_order(power, full)

        # spec (v2.1): the first iterative auth checks start from the empty state.
        base: dict[StateKey, str] = {} if v2_1 else dict(unconflicted)
        partial = self._iterative_auth_checks(sorted_power, base)

        in_power = set(sorted_power)
        leftover = [eid for eid in full if eid not in in_power]
        ordered = self._mainline_order(leftover, partial.get(POWER_LEVELS_KEY))
        resolved = self._iterative_auth_checks(ordered, partial)

        resolved.update(unconflicted)
        return resolved

    def _auth_difference(self, state_sets: Sequence[Mapping[StateKey, str]]) -> set[str]:
        # Synapse: each state set's full auth chain includes the state events
        # themselves. (The spec's wording leaves them out; with them, an
        # unconflicted event never lands in the difference, which is the intent.)
        chains = []
        for state_set in state_sets:
            ids = [eid for eid in state_set.values() if self.get(eid) is not None]
            chains.append(self.auth_chain(ids) | set(ids))
        union = set().union(*chains)
        common = set.intersection(*chains) if chains else set()
        return union - common

    def _conflicted_subgraph(self, conflicted_ids: set[str]) -> set[str]:
        """Events on auth-edge paths between two conflicted events (room v12)."""
        # Walk down from the conflicted events; remember which nodes were reached.
        reachable = self.auth_chain(conflicted_ids)  # strictly below some conflicted event
        # reaches[x]: x has a path (length >= 1) to a conflicted event.
        reaches: dict[str, bool] = {}
        for start in reachable:
            if start in reaches:
                continue
            stack: list[tuple[str, bool]] = [(start, False)]
            while stack:
                node, expanded = stack.pop()
                if node in reaches:
                    continue
                parents = self.auth_edges(node)
                if expanded:
                    reaches[node] = any(p in conflicted_ids or reaches.get(p, False) for p in parents)
                    continue
                stack.append((node, True))
                stack.extend((p, False) for p in parents if p not in reaches)
        subgraph = {x for x in reachable if reaches.get(x, False)}
        return subgraph | conflicted_ids

    def _sender_level(self, event_id: str) -> int | float:
        """The sender's power level according to the event's own auth events."""
        level = self._sender_levels.get(event_id)
        if level is None:
            event = self._event(event_id)
            level = get_user_power_level(event.sender, self._auth_map_from_edges(event_id), self.room_version)
            self._sender_levels[event_id] = level
        return level

    def _reverse_topological_power_order(self, power: list[str], full: set[str]) -> list[str]:
        # spec: X = power events + the events of their auth chains that are in
        # the full conflicted set. The DAG among X keeps the auth ancestry even
        # when it passes through events outside the full conflicted set, so
        # each node's edges are its nearest ancestors that are in the set.
        nearest: dict[str, frozenset[str]] = {}

        def nearest_in_full(root: str) -> frozenset[str]:
            stack: list[tuple[str, bool]] = [(root, False)]
            while stack:
                node, expanded = stack.pop()
                if node in nearest:
                    continue
                parents = self.auth_edges(node)
                if expanded:
                    acc: set[str] = set()
                    for p in parents:
                        if p in full:
                            acc.add(p)
                        else:
                            acc |= nearest.get(p, frozenset())  # .get: tolerate a (forged) cycle
                    nearest[node] = frozenset(acc)
                    continue
                stack.append((node, True))
                stack.extend((p, False) for p in parents if p not in full and p not in nearest)
            return nearest[root]

        graph: dict[str, frozenset[str]] = {}
        todo = list(power)
        while todo:
            eid = todo.pop()
            if eid in graph:
                continue
            edges = nearest_in_full(eid)
            graph[eid] = edges
            todo.extend(e for e in edges if e not in graph)

        def key(eid: str) -> tuple[float, int, str]:
            return (-self._sender_level(eid), self._event(eid).origin_server_ts, eid)

        return _kahn(graph, key)

    def _iterative_auth_checks(self, ordered: list[str], base: Mapping[StateKey, str]) -> dict[StateKey, str]:
        state = dict(base)
        for eid in ordered:
            event = self._event(eid)
            if not event.is_state:
                continue
            # spec: events rejected earlier for failing auth against the state
            # at the event are re-checked here like any other event.
            if self._allowed(event, state):
                state[event.state_tuple] = eid
        return state

    def _pl_parent_of(self, event_id: str) -> str | None:
        """The m.room.power_levels event among the event's auth events, if any."""
        if event_id not in self._pl_parent:
            parent = None
            for aid in self.auth_edges(event_id):
                ae = self._event(aid)
                if ae.is_state and ae.state_tuple == POWER_LEVELS_KEY:
                    parent = aid
                    break
            self._pl_parent[event_id] = parent
        return self._pl_parent[event_id]

    def _mainline_order(self, event_ids: list[str], resolved_pl: str | None) -> list[str]:
        if not event_ids:
            return []
        mainline: dict[str, int] = {}
        pl = resolved_pl if resolved_pl is not None and self.get(resolved_pl) is not None else None
        i = 0
        while pl is not None and pl not in mainline:
            mainline[pl] = i
            i += 1
            pl = self._pl_parent_of(pl)

        positions: dict[str, float] = {}

        def position_of_pl_chain(start: str | None) -> float:
            # Position of the first event of e1, e2, ... that is on the mainline.
            path: list[str] = []
            node = start
            result: float = math.inf
            while node is not None:
                if node in positions:
                    result = positions[node]
                    break
                if node in mainline:
                    result = mainline[node]
                    break
                path.append(node)
                node = self._pl_parent_of(node)
            for p in path:
                positions[p] = result
            return result

        def key(eid: str) -> tuple[float, int, str]:
            # spec: e0 itself is not part of its own list.
            pos = position_of_pl_chain(self._pl_parent_of(eid))
            return (-pos, self._event(eid).origin_server_ts, eid)

        return sorted(event_ids, key=key)

    # -- v1 -------------------------------------------------------------------

    def resolve_v1(self, state_sets: Sequence[Mapping[StateKey, str]]) -> dict[StateKey, str]:
        # spec: a conflict is two states holding different event IDs for one key;
        # a key some states lack is not a conflict.
        candidates: dict[StateKey, set[str]] = {}
        for state_set in state_sets:
            for key, eid in state_set.items():
                candidates.setdefault(key, set()).add(eid)
        resolved: dict[StateKey, str] = {}
        conflicted: dict[StateKey, list[Event]] = {}
        for key, ids in candidates.items():
            if len(ids) == 1:
                resolved[key] = next(iter(ids))
                continue
            events = [e for e in (self.get(i) for i in ids) if e is not None]
            if len(events) == 1:
                resolved[key] = events[0].event_id
            elif events:
                conflicted[key] = events

        if POWER_LEVELS_KEY in conflicted:
            resolved[POWER_LEVELS_KEY] = self._v1_resolve_auth_events(conflicted[POWER_LEVELS_KEY], resolved)
        for phase in ("m.room.join_rules", "m.room.member"):
            # Synapse: every key of a phase is resolved against the state as it
            # was before the phase, then they are all applied.
            phase_result = {
                key: self._v1_resolve_auth_events(events, resolved)
                for key, events in conflicted.items()
                if key[0] == phase
            }
            resolved.update(phase_result)
        others = {
            key: self._v1_resolve_normal_events(events, resolved)
            for key, events in conflicted.items()
            if key != POWER_LEVELS_KEY and key[0] not in ("m.room.join_rules", "m.room.member")
        }
        resolved.update(others)
        return resolved

    @staticmethod
    def _v1_order(events: list[Event]) -> list[Event]:
        """Ascending depth, then descending sha1(event_id)."""

        def sha1(e: Event) -> str:
            return hashlib.sha1(e.event_id.encode("utf-8")).hexdigest()

        by_sha_desc = sorted(events, key=sha1, reverse=True)
        return sorted(by_sha_desc, key=lambda e: e.depth)  # stable: keeps sha order within a depth

    def _v1_resolve_auth_events(self, events: list[Event], state: Mapping[StateKey, str]) -> str:
        ordered = self._v1_order(events)
        working = dict(state)
        accepted = ordered[0]
        working[accepted.state_tuple] = accepted.event_id
        for event in ordered[1:]:
            if not self._allowed(event, working):
                break
            accepted = event
            working[event.state_tuple] = event.event_id
        return accepted.event_id

    def _v1_resolve_normal_events(self, events: list[Event], state: Mapping[StateKey, str]) -> str:
        # spec: the highest depth, lowest sha1 that passes auth in R.
        ordered = list(reversed(self._v1_order(events)))
        for event in ordered:
            if self._allowed(event, state):
                return event.event_id
        # Synapse: when none passes, the one with the lowest depth.
        return ordered[-1].event_id


# ---------------------------------------------------------------------------
# pure helpers


def _split_v2(
    state_sets: Sequence[Mapping[StateKey, str]],
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """Unconflicted state map and conflicted state set: a key is unconflicted
    only if every state has it with the same event."""
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    keys = set().union(*(s.keys() for s in state_sets))
    for key in keys:
        values = {s.get(key) for s in state_sets}
        if len(values) == 1 and None not in values:
            unconflicted[key] = next(iter(values))  # type: ignore[assignment]
        else:
            values.discard(None)
            conflicted[key] = values  # type: ignore[assignment]
    return unconflicted, conflicted


def _is_power_event(event: Event) -> bool:
    # spec: power levels, join rules, and kicks/bans (leave or ban by someone else).
    # (Synapse also counts the create event; it can only be conflicted in a
    # broken room, and the spec's list does not include it.)
    if not event.is_state:
        return False
    if event.state_tuple in (POWER_LEVELS_KEY, JOIN_RULES_KEY):
        return True
    if event.type == "m.room.member" and event.membership() in ("leave", "ban"):
        return event.sender != event.state_key
    return False


def _kahn(graph: Mapping[str, frozenset[str]], key: Callable[[str], tuple[float, int, str]]) -> list[str]:
    """Lexicographically smallest topological order, earliest (auth ancestors) first.

    ``graph`` maps each node to the nodes it depends on (its auth ancestors);
    at each step the smallest ready node by ``key`` is taken.
    """
    remaining = {node: len(deps) for node, deps in graph.items()}
    dependants: dict[str, list[str]] = {node: [] for node in graph}
    for node, deps in graph.items():
        for dep in deps:
            dependants[dep].append(node)
    heap = [(key(node), node) for node, n in remaining.items() if n == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        _, node = heapq.heappop(heap)
        order.append(node)
        for child in dependants[node]:
            remaining[child] -= 1
            if remaining[child] == 0:
                heapq.heappush(heap, (key(child), child))
    return order
