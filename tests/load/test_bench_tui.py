"""Smoke test of the terminal client benchmark (tests/load/bench_tui.py): a small account, one
cold and one warm start per transport, in real client processes against the in-process server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.load.bench_tui import markdown, measure, populate


async def test_bench_tui_smoke(server_factory: Any, tmp_path: Path) -> None:
    server = await server_factory({"rate_limits.enabled": False, "http.websocket_ping_interval_s": 0})
    filled = await populate(server.base_url, rooms=4, messages=6)
    results = await measure(server.base_url, filled, rooms=4, runs=1, work=tmp_path)
    runs = {(r["kind"], r["transport"]): r for r in results["runs"]}
    assert set(runs) == {(kind, transport) for kind in ("cold", "warm") for transport in ("websocket", "long-poll")}
    for (kind, _), run in runs.items():
        assert run["rooms"] == 4 and run["from_cache"] == (kind == "warm")
        assert run["started"] < run["imported"] < run["room_list"] <= run["caught_up"]
        assert run["VmRSS"] > 0
    assert runs[("warm", "websocket")]["events"] >= 4 * 6 + 4  # the cached messages and the news
    assert results["model"]["rooms"] == 4 and results["model"]["model_bytes"] > 0
    assert "| cold | websocket | 1 |" in markdown(results, 4, 6)
