"""Pure scenario planning: which users sit in which rooms, who sends where.  No I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RoomPlan:
    key: str  # "dm3", "group7", "big0"
    kind: str  # "dm" | "group" | "big"
    members: tuple[int, ...]  # user indexes; members[0] creates the room


@dataclass(frozen=True)
class Topology:
    users: int = 1000
    dms: int = 300
    groups: int = 20
    group_size: int = 25
    big_groups: int = 1
    big_group_size: int = 300

    def check(self) -> None:
        if self.users < 2:
            raise ValueError("need at least 2 users")
        for name, size in (("group_size", self.group_size), ("big_group_size", self.big_group_size)):
            if size > self.users:
                raise ValueError(f"{name}={size} exceeds users={self.users}")
            if size < 2:
                raise ValueError(f"{name} must be at least 2")


def plan_rooms(topo: Topology, seed: int = 0) -> list[RoomPlan]:
    """Deterministic rooms for a topology: DMs between random pairs, groups of random members."""
    topo.check()
    rng = random.Random(seed)
    users = list(range(topo.users))
    rooms: list[RoomPlan] = []
    for i in range(topo.dms):
        a, b = rng.sample(users, 2)
        rooms.append(RoomPlan(f"dm{i}", "dm", (a, b)))
    for i in range(topo.groups):
        rooms.append(RoomPlan(f"group{i}", "group", tuple(rng.sample(users, topo.group_size))))
    for i in range(topo.big_groups):
        rooms.append(RoomPlan(f"big{i}", "big", tuple(rng.sample(users, topo.big_group_size))))
    return rooms


def pick_senders(rooms: list[RoomPlan], n: int, seed: int = 1) -> list[tuple[int, int]]:
    """(room index, sender user index) for ``n`` sends: room uniform at random, sender a random member."""
    if not rooms:
        raise ValueError("no rooms to send into")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.randrange(len(rooms))
        out.append((r, rng.choice(rooms[r].members)))
    return out


def users_in_rooms(rooms: list[RoomPlan]) -> list[int]:
    """Sorted indexes of users that are in at least one room (only they need a sync)."""
    return sorted({m for r in rooms for m in r.members})
