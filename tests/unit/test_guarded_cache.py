"""GuardedCache: a read that raced a write keeps nothing; a write that ran alone may write through."""

from homeserver.infra.guarded_cache import GuardedCache


def test_read_kept_when_no_write_came_between() -> None:
    c: GuardedCache[str, int] = GuardedCache()
    mark = c.read_mark("room")
    c.put("k", 1, "room", mark)
    assert c.get("k") == 1


def test_read_after_a_finished_write_is_kept() -> None:
    c: GuardedCache[str, int] = GuardedCache()
    t = c.begin_write("room")
    assert c.end_write("room", t)
    mark = c.read_mark("room")
    c.put("k", 1, "room", mark)
    assert c.get("k") == 1


def test_read_overlapping_a_write_start_is_dropped() -> None:
    c: GuardedCache[str, int] = GuardedCache()
    mark = c.read_mark("room")
    t = c.begin_write("room")  # the write starts while the read is under way
    c.put("k", 1, "room", mark)
    assert c.get("k") is None
    c.end_write("room", t)
    c.put("k", 1, "room", mark)  # still from before the write
    assert c.get("k") is None


def test_read_during_a_write_in_flight_is_dropped() -> None:
    c: GuardedCache[str, int] = GuardedCache()
    t = c.begin_write("room")
    mark = c.read_mark("room")
    assert mark is None
    c.put("k", 1, "room", mark)
    c.end_write("room", t)
    assert c.get("k") is None


def test_writes_to_other_scopes_do_not_disturb() -> None:
    c: GuardedCache[str, int] = GuardedCache()
    mark = c.read_mark("a")
    t = c.begin_write("b")
    c.end_write("b", t)
    c.put("k", 1, "a", mark)
    assert c.get("k") == 1


def test_overlapping_writes_are_not_alone() -> None:
    c: GuardedCache[str, int] = GuardedCache()
    c.put("k", 1, "room", c.read_mark("room"))
    t1 = c.begin_write("room")
    t2 = c.begin_write("room")
    assert not c.end_write("room", t2)  # t1 still in flight
    assert not c.end_write("room", t1)  # t2 came and went meanwhile
    t3 = c.begin_write("room")
    assert c.end_write("room", t3)
    c.set("k", 5)
    assert c.get("k") == 5
    c.set("absent", 7)  # write-through never adds entries
    assert c.get("absent") is None
    c.invalidate("k")
    assert c.get("k") is None


def test_full_cache_clears_and_old_reads_stay_out() -> None:
    c: GuardedCache[int, int] = GuardedCache(max_entries=3)
    old_mark = c.read_mark("s")
    for i in range(3):
        c.put(i, i, "s", c.read_mark("s"))
    c.put(3, 3, "s", c.read_mark("s"))  # over the limit: everything goes
    assert [c.get(i) for i in range(4)] == [None, None, None, None]
    c.put(9, 9, "s", old_mark)  # taken before the clear
    assert c.get(9) is None
    c.put(9, 9, "s", c.read_mark("s"))
    assert c.get(9) == 9
