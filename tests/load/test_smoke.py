"""CI smoke test of the load tool against our homeserver: 20 users, 10 seconds of sends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.load.generator import LoadConfig, run_load
from tests.load.plan import Topology
from tests.load.servers import RunningServer, start_parley
from tests.load.stats import Phase


@pytest.fixture(scope="module")
def parley(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    work: Path = tmp_path_factory.mktemp("load-smoke")
    srv = start_parley(work)
    try:
        yield srv
    finally:
        srv.stop()


def test_load_smoke(parley: RunningServer) -> None:
    cfg = LoadConfig(
        url=parley.url,
        topology=Topology(users=20, dms=5, groups=2, group_size=6, big_groups=1, big_group_size=15),
        workers=0,
        setup_concurrency=8,
        drain_timeout=10,
        server_pids=parley.pids,
        max_run_seconds=240,
        settle_s=2,
    )
    res = asyncio.run(run_load(cfg, [Phase(5, 10, "5/s")]))
    phase = res["phases"][0]
    assert phase["send"]["errors"] == 0, phase["send"].get("error_samples")
    assert phase["send"]["ok"] == 50
    dl = phase["delivery"]
    assert dl["expected_pairs"] > 0
    assert dl["delivery_rate"] >= 0.999, dl
    assert dl["duplicates"] == 0
    assert res["server_processes"]["cpu_s"] > 0


def test_load_smoke_websocket(parley: RunningServer) -> None:
    """The same load with the WebSocket sync transport: every message delivered once."""
    cfg = LoadConfig(
        url=parley.url,
        topology=Topology(users=20, dms=5, groups=2, group_size=6, big_groups=1, big_group_size=15),
        workers=0,
        sync_mode="websocket",
        setup_concurrency=8,
        drain_timeout=10,
        server_pids=parley.pids,
        max_run_seconds=240,
        settle_s=2,
    )
    res = asyncio.run(run_load(cfg, [Phase(5, 10, "5/s")]))
    phase = res["phases"][0]
    assert phase["send"]["errors"] == 0, phase["send"].get("error_samples")
    dl = phase["delivery"]
    assert dl["expected_pairs"] > 0
    assert dl["delivery_rate"] >= 0.999, dl
    assert dl["duplicates"] == 0
