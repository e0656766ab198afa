"""Unit tests for the load tool's pure core: schedule, percentiles, delivery ledger, tables, planning."""

from __future__ import annotations

import math

import pytest

from tests.load.generator import extract_arrivals, message_content, parse_phase
from tests.load.plan import Topology, pick_senders, plan_rooms
from tests.load.procstats import group_rows, process_kind
from tests.load.stats import (
    DeliveryLedger,
    Phase,
    build_schedule,
    format_table,
    holds,
    percentile,
    results_table,
    summarize,
    verdict,
)

# -- schedule ----------------------------------------------------------------------------------

def test_uniform_schedule_counts_and_spacing() -> None:
    sched = build_schedule([Phase(50, 2), Phase(100, 1)])
    assert len(sched) == 100 + 100
    assert [p for _, p in sched].count(0) == 100
    assert sched[0] == (0.0, 0)
    assert sched[1][0] == pytest.approx(0.02)
    # second phase starts exactly when the first ends, at the new spacing
    first_of_second = next(t for t, p in sched if p == 1)
    assert first_of_second == pytest.approx(2.0)
    offsets = [t for t, _ in sched]
    assert offsets == sorted(offsets)
    assert offsets[-1] < 3.0


def test_schedule_skips_empty_phases_but_keeps_their_time() -> None:
    sched = build_schedule([Phase(0, 5), Phase(10, 1)])
    assert len(sched) == 10
    assert sched[0] == (5.0, 1)


def test_poisson_schedule_is_seeded_and_near_rate() -> None:
    a = build_schedule([Phase(200, 10)], poisson=True, seed=3)
    b = build_schedule([Phase(200, 10)], poisson=True, seed=3)
    assert a == b
    assert 1800 < len(a) < 2200
    assert all(0 <= t < 10 for t, _ in a)


def test_parse_phase() -> None:
    assert parse_phase("50:60") == Phase(50.0, 60.0, "50/s")
    assert parse_phase("7.5:2").rate == 7.5


# -- percentiles -------------------------------------------------------------------------------

def test_percentile_matches_linear_interpolation() -> None:
    vals = [1.0, 2.0, 3.0, 4.0]
    assert percentile(vals, 0) == 1.0
    assert percentile(vals, 100) == 4.0
    assert percentile(vals, 50) == 2.5
    assert percentile(vals, 25) == pytest.approx(1.75)
    vals100 = [float(i) for i in range(1, 101)]
    assert percentile(vals100, 99) == pytest.approx(99.01)
    assert percentile([7.0], 95) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(vals, 101)


def test_summarize() -> None:
    s = summarize([30.0, 10.0, 20.0])
    assert (s.count, s.avg, s.p50, s.max) == (3, 20.0, 20.0, 30.0)
    d = summarize([]).as_dict()
    assert d["count"] == 0 and d["p99_ms"] is None


# -- delivery ledger ---------------------------------------------------------------------------

def test_ledger_counts_delivery_duplicates_and_early_arrivals() -> None:
    led = DeliveryLedger()
    led.seen("m1", "@b", 40.0)  # arrives before the send's response registered it
    led.expect("m1", ["@b", "@c"])
    led.seen("m1", "@c", 60.0)
    led.seen("m1", "@c", 70.0)  # duplicate
    led.expect("m2", ["@b"])
    led.seen("m9", "@b", 5.0)  # never registered: the send failed on our side
    assert led.outstanding() == 1
    rep = led.report(["m1", "m2", "m9"])
    assert rep["expected_pairs"] == 3
    assert rep["delivered_pairs"] == 2
    assert rep["delivery_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert rep["duplicates"] == 1
    assert rep["unexpected_pairs"] == 1
    lat = rep["latency"]
    assert isinstance(lat, dict)
    assert lat["count"] == 2 and lat["max_ms"] == 60.0
    only_m2 = led.report(["m2"])
    assert only_m2["delivered_pairs"] == 0 and only_m2["duplicates"] == 0


def test_ledger_splits_latency_by_room_size() -> None:
    led = DeliveryLedger()
    led.expect("dm", ["@b"])
    led.expect("big", [f"@u{i}" for i in range(60)])
    led.seen("dm", "@b", 3.0)
    for i in range(60):
        led.seen("big", f"@u{i}", 10.0 + i)
    by_size = led.report()["latency_by_room_size"]
    assert isinstance(by_size, dict)
    assert set(by_size) == {"1", "50+"}
    assert by_size["1"]["count"] == 1 and by_size["1"]["max_ms"] == 3.0
    assert by_size["50+"]["count"] == 60 and by_size["50+"]["max_ms"] == 69.0
    table = results_table({"phases": [{"label": "x", "send": {"latency": {}}, "delivery": led.report()}]})
    assert "Delivery by room size" in table and "50+" in table


def test_verdict_and_holds() -> None:
    good = {"delivery_rate": 1.0, "latency": {"avg_ms": 50.0, "p95_ms": 200.0, "p99_ms": 400.0}}
    assert all(verdict(good).values()) and holds(good)
    slow = {"delivery_rate": 1.0, "latency": {"avg_ms": 50.0, "p95_ms": 200.0, "p99_ms": 501.0}}
    assert not holds(slow)
    lossy = {"delivery_rate": 0.998, "latency": {"avg_ms": 5.0, "p95_ms": 5.0, "p99_ms": 5.0}}
    assert not holds(lossy)
    empty = {"delivery_rate": None, "latency": {"p99_ms": None}}
    assert not holds(empty)


# -- message ids and sync parsing --------------------------------------------------------------

def test_message_content_is_canonical_json_safe_and_round_trips() -> None:
    c = message_content("run1", "run1-5", 1000.25)
    tag = c["parley_load"]
    assert isinstance(tag["t0_us"], int)  # canonical JSON forbids floats
    ev_mine = {"sender": "@a", "content": c}
    ev_other = {"sender": "@b", "content": c}
    foreign = {"sender": "@b", "content": message_content("run2", "run2-1", 1000.0)}
    plain = {"sender": "@b", "content": {"body": "hi"}}
    got = extract_arrivals("run1", "@a", 1000.5, {"!r": [ev_mine, ev_other, foreign, plain]})
    assert len(got) == 1
    mid, rcpt, ms = got[0]
    assert (mid, rcpt) == ("run1-5", "@a")
    assert ms == pytest.approx(250.0)


# -- planning ----------------------------------------------------------------------------------

def test_plan_rooms_shape_and_determinism() -> None:
    topo = Topology(users=100, dms=30, groups=4, group_size=10, big_groups=1, big_group_size=60)
    rooms = plan_rooms(topo, seed=1)
    assert rooms == plan_rooms(topo, seed=1)
    assert len(rooms) == 35
    assert all(len(set(r.members)) == len(r.members) for r in rooms)
    assert [len(r.members) for r in rooms if r.kind == "dm"] == [2] * 30
    assert [len(r.members) for r in rooms if r.kind == "big"] == [60]
    with pytest.raises(ValueError):
        plan_rooms(Topology(users=10, big_group_size=300))


def test_pick_senders_are_members() -> None:
    rooms = plan_rooms(Topology(users=40, dms=5, groups=2, group_size=5, big_groups=1, big_group_size=20))
    for r, s in pick_senders(rooms, 500):
        assert s in rooms[r].members


# -- tables and process grouping ---------------------------------------------------------------

def test_format_table_aligns() -> None:
    t = format_table(["a", "bb"], [[1, 2.345], [None, 1234.5]])
    lines = t.splitlines()
    assert lines[0] == "| a | bb   |"
    assert lines[1] == "|---|------|"
    assert lines[2] == "| 1 | 2.35 |"
    assert lines[3] == "| - | 1234 |"


def test_results_table_renders_a_result() -> None:
    led = DeliveryLedger()
    led.expect("m", ["@b"])
    led.seen("m", "@b", 12.0)
    phase = {"label": "10/s", "rate": 10.0,
             "send": {"ok": 1, "errors": 0, "latency": summarize([5.0]).as_dict()},
             "delivery": led.report()}
    out = results_table({"phases": [phase], "setup": {"register": {"count": 2, "seconds": 0.5}}})
    assert "| 10/s " in out and "100.00%" in out and "register" in out


def test_group_rows_collapses_postgres_backends() -> None:
    assert process_kind("postgres: postgres synapse [local] idle") == "postgres: backends"
    assert process_kind("postgres: walwriter") == "postgres: walwriter"
    rows = [{"pid": 1, "name": "python -m synapse.app.homeserver", "cpu_s": 5.0, "peak_rss_mb": 100.0},
            {"pid": 2, "name": "postgres: postgres s [local] idle", "cpu_s": 1.0, "peak_rss_mb": 30.0},
            {"pid": 3, "name": "postgres: postgres s [local] SELECT", "cpu_s": 2.0, "peak_rss_mb": 40.0}]
    g = group_rows(rows)
    assert g[0]["name"] == "python -m synapse.app.homeserver"
    assert g[1] == {"name": "postgres: backends", "pid": "x2", "count": 2, "cpu_s": 3.0, "peak_rss_mb": 40.0}


def test_tree_sampler_measures_this_process() -> None:
    import os
    import sys
    import time

    from tests.load.procstats import TreeSampler

    if not sys.platform.startswith("linux"):
        pytest.skip("the process sampler reads /proc, which only Linux has; the load tool measures Linux servers")
    sampler = TreeSampler([os.getpid()], interval=0.05).start()
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    rep = sampler.stop()
    assert rep["cpu_s"] >= 0.2
    assert rep["peak_rss_sum_mb"] > 1
    assert rep["processes"][0]["peak_rss_mb"] > 1
