"""Terminal client benchmark (a script, not a test): start-up to a usable room list, and memory.

    PYTHONPATH=. python tests/load/bench_tui.py [--rooms 200] [--messages 50] [--runs 3] [--url URL]

Without --url it starts Parley the way the other bench scripts do (``python -m homeserver run``
on its own PostgreSQL, rate limits off; tests/load/servers.py) and fills it: one account
("bench") in ``--rooms`` rooms, each with ``--messages`` messages from a second account, so
with the client's sync filter (timeline limit 50) a first sync holds rooms x 50 events, and
so does the cache (50 events per room).

Each measurement is a fresh process (``--child``) running the real app headless (Textual's
``run_test``, 120x40) with the real client layer over loopback:

- **cold**: no cache. Time from spawning the process to the room list showing every room
  (the first sync has been received and applied, the first room drawn).
- **warm**: the cache the cold run wrote on exit. Time to the room list (drawn from the
  cache), and to "caught up": the first sync after start applied. Before each warm run a
  second account posts one message in 20 rooms, so catching up has something to fetch.

Each for both sync transports (WebSocket, long-poll). Also reported per run: the time the
imports took, RSS and peak RSS (VmHWM) of the client process once caught up, and the events
the model holds. Separately, in a process that only loads the warm cache: the time to load
it, the model's memory (tracemalloc), the time to write all of it again, and the file size.

Results print as Markdown (see spec/benchmarks.md, "Terminal client"). Machine load from
other processes shows up in the timings; no timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

V3 = "/_matrix/client/v3"
PASSWORD = "bench password"


# -- filling the server ------------------------------------------------------------------------------


async def populate(url: str, rooms: int, messages: int, concurrency: int = 16) -> dict[str, Any]:
    """Register "bench" and "peer" (suffixed), put both in ``rooms`` rooms, fill each with
    ``messages`` messages from peer. Returns bench's session JSON and peer's token."""
    import httpx

    tag = f"{random.getrandbits(24):06x}"
    async with httpx.AsyncClient(base_url=url, timeout=120,
                                 limits=httpx.Limits(max_connections=concurrency + 2)) as http:
        async def register(name: str) -> dict[str, Any]:
            r = await http.post(f"{V3}/register", json={"username": f"{name}{tag}", "password": PASSWORD,
                                                        "auth": {"type": "m.login.dummy"}})
            r.raise_for_status()
            return dict(r.json())

        bench, peer = await register("bench"), await register("peer")
        hb = {"Authorization": f"Bearer {bench['access_token']}"}
        hp = {"Authorization": f"Bearer {peer['access_token']}"}
        gate = asyncio.Semaphore(concurrency)

        async def make_room(index: int) -> str:
            async with gate:
                r = await http.post(f"{V3}/createRoom", headers=hb, json={
                    "name": f"Room {index:03d}", "topic": f"Topic of room {index}", "invite": [peer["user_id"]]})
                r.raise_for_status()
                room_id = str(r.json()["room_id"])
                (await http.post(f"{V3}/join/{room_id}", headers=hp, json={})).raise_for_status()
                return room_id

        room_ids = await asyncio.gather(*(make_room(i) for i in range(rooms)))

        async def send(room_id: str, index: int) -> None:
            async with gate:
                r = await http.put(f"{V3}/rooms/{room_id}/send/m.room.message/fill{index}", headers=hp,
                                   json={"msgtype": "m.text", "body": f"Message {index} of a busy day in this room, "
                                         "long enough to look like chat."})
                r.raise_for_status()

        await asyncio.gather(*(send(room_id, i) for room_id in room_ids for i in range(messages)))
    session = {"homeserver": url, "user_id": bench["user_id"], "access_token": bench["access_token"],
               "device_id": bench["device_id"], "refresh_token": None}
    return {"session": session, "peer_token": peer["access_token"], "rooms": list(room_ids)}


async def post_news(url: str, peer_token: str, room_ids: list[str], count: int = 20) -> None:
    """One new message in each of ``count`` rooms: what a warm start has to catch up on."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for room_id in room_ids[:count]:
            r = await http.put(f"{V3}/rooms/{room_id}/send/m.room.message/news{random.getrandbits(40)}",
                               headers={"Authorization": f"Bearer {peer_token}"},
                               json={"msgtype": "m.text", "body": "Something new"})
            r.raise_for_status()


# -- one client process ------------------------------------------------------------------------------


def _status_kb() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


async def _child(session_json: str, cache_root: str, rooms: int, transport: str, started: float) -> dict[str, Any]:
    from tui_client.app import ParleyApp
    from tui_client.matrix import HttpxTransport, MatrixClient, Session
    from tui_client.widgets import RoomList

    imported = time.time()
    session = Session.from_json(json.loads(session_json))
    client = MatrixClient(HttpxTransport(session.homeserver), session.homeserver, session,
                          use_websocket=transport == "websocket")
    app = ParleyApp(client, cache_root=Path(cache_root), image_protocol="halfcell")
    result: dict[str, Any] = {"started": started, "imported": imported}
    async with app.run_test(headless=True, size=(120, 40)) as pilot:
        while True:
            lists = app.screen.query(RoomList)
            if lists and len(lists.first().room_ids()) >= rooms and getattr(app.screen, "room_id", None):
                result["room_list"] = time.time()
                break
            await pilot.pause(0.005)
        result["from_cache"] = app.restored_from_cache
        cached_token = app.model.next_batch if app.restored_from_cache else None
        # Caught up: a sync after start has been applied (the model's token moved on).
        while app.model.next_batch is None or app.model.next_batch == cached_token:
            await pilot.pause(0.005)
        result["caught_up"] = time.time()
        await pilot.pause(0.2)
        result["transport"] = client.sync_transport
        result["events"] = sum(len(room.events()) for room in app.model.rooms.values())
        result["rooms"] = len(app.model.rooms)
        result.update(_status_kb())
    return result


def _model_memory(session_json: str, cache_root: str) -> dict[str, Any]:
    """Loading the cache (timed), its model's memory (tracemalloc, in a process that does only
    this), and writing the whole model again (timed, to a copy)."""
    import tracemalloc

    from tui_client.cache import StateCache
    from tui_client.matrix import Session

    session = Session.from_json(json.loads(session_json))
    cache = StateCache.for_account(Path(cache_root), session.homeserver, session.user_id)
    started = time.perf_counter()
    model = cache.load()
    load_s = time.perf_counter() - started
    assert model is not None, "no cache to load"
    del model
    tracemalloc.start()
    model = cache.load()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert model is not None
    copy = StateCache.for_account(Path(cache_root) / "copy", session.homeserver, session.user_id)
    started = time.perf_counter()
    copy.save(model, everything=True)
    save_s = time.perf_counter() - started
    copy.close()
    cache.close()
    return {"model_bytes": current, "load_peak_bytes": peak, "load_s": load_s, "save_s": save_s,
            "events": sum(len(room.events()) for room in model.rooms.values()), "rooms": len(model.rooms),
            "cache_file_bytes": cache.path.stat().st_size}


async def run_child(args: list[str], timeout: float = 600) -> dict[str, Any]:
    """Spawn this script with ``args``; its last output line is JSON."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    started = time.time()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), "--child", *args, "--started", repr(started),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"client process failed ({proc.returncode}): {err.decode()[-2000:]}")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


async def measure(url: str, filled: dict[str, Any], rooms: int, runs: int, work: Path,
                  transports: tuple[str, ...] = ("websocket", "long-poll")) -> dict[str, Any]:
    """Cold and warm starts for each transport, then the model's memory from a warm cache."""
    session_json = json.dumps(filled["session"])
    out: dict[str, Any] = {"runs": []}
    for transport in transports:
        for run in range(runs):
            cache = work / f"cache-{transport}-{run}"
            shutil.rmtree(cache, ignore_errors=True)
            cold = await run_child([session_json, str(cache), str(rooms), transport, "start"])
            assert not cold["from_cache"], "a cold start found a cache"
            await post_news(url, filled["peer_token"], filled["rooms"])
            warm = await run_child([session_json, str(cache), str(rooms), transport, "start"])
            assert warm["from_cache"], "a warm start found no cache"
            for kind, result in (("cold", cold), ("warm", warm)):
                result.update(kind=kind, run=run)
                out["runs"].append(result)
                print(f"  {transport} {kind} run {run + 1}: room list {result['room_list'] - result['started']:.2f} s, "
                      f"caught up {result['caught_up'] - result['started']:.2f} s, "
                      f"RSS {result.get('VmRSS', 0) / 1024:.0f} MiB, {result['events']} events", flush=True)
    out["model"] = await run_child([session_json, str(work / f"cache-{transports[0]}-0"), "memory"])
    return out


def markdown(results: dict[str, Any], rooms: int, messages: int) -> str:
    lines = [(f"Account in {rooms} rooms, {messages} messages each (timeline limit 50: "
              f"{rooms * min(messages, 50):,} events in the first sync and in the cache)."), "",
             ("| start | sync transport | runs | imports done (s) | room list shown (s) | caught up (s) "
              "| RSS once caught up (MiB) | peak RSS (MiB) |"),
             "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in results["runs"]:
        groups.setdefault((run["kind"], run["transport"]), []).append(run)

    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})" if len(values) > 1 \
            else f"{values[0]:.2f}"

    for (kind, transport), runs in groups.items():
        lines.append(
            f"| {kind} | {transport} | {len(runs)} | {med([r['imported'] - r['started'] for r in runs])} "
            f"| {med([r['room_list'] - r['started'] for r in runs])} "
            f"| {med([r['caught_up'] - r['started'] for r in runs])} "
            f"| {statistics.median([r.get('VmRSS', 0) for r in runs]) / 1024:.0f} "
            f"| {statistics.median([r.get('VmHWM', 0) for r in runs]) / 1024:.0f} |")
    model = results["model"]
    lines += ["", (f"Model loaded from the cache alone ({model['rooms']} rooms, {model['events']:,} events): "
                   f"{model['model_bytes'] / 2**20:.1f} MiB allocated (tracemalloc; peak while loading "
                   f"{model['load_peak_bytes'] / 2**20:.1f} MiB); loading took {model['load_s'] * 1000:.0f} ms, "
                   f"writing all of it {model['save_s'] * 1000:.0f} ms; cache file "
                   f"{model['cache_file_bytes'] / 2**20:.1f} MiB.")]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child = argparse.ArgumentParser()
        child.add_argument("session")
        child.add_argument("cache")
        child.add_argument("rest", nargs="+")
        child.add_argument("--started", type=float, required=True)
        a = child.parse_args(sys.argv[2:])
        if a.rest == ["memory"]:
            result = _model_memory(a.session, a.cache)
        else:
            rooms, transport, _ = a.rest
            result = asyncio.run(_child(a.session, a.cache, int(rooms), transport, a.started))
        print(json.dumps(result))
        return

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="an already running homeserver (default: start Parley)")
    ap.add_argument("--rooms", type=int, default=200)
    ap.add_argument("--messages", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--transport", choices=["websocket", "long-poll", "both"], default="both")
    a = ap.parse_args()

    from tests.load import servers

    work = Path(tempfile.mkdtemp(prefix="parley-bench-tui-"))
    server = None
    try:
        url = a.url
        if url is None:
            print("starting Parley", flush=True)
            server = servers.start_parley(work / "server")
            url = server.url
        print(f"filling: {a.rooms} rooms x {a.messages} messages", flush=True)
        started = time.perf_counter()
        filled = asyncio.run(populate(url, a.rooms, a.messages))
        print(f"  filled in {time.perf_counter() - started:.0f} s", flush=True)
        transports = ("websocket", "long-poll") if a.transport == "both" else (a.transport,)
        results = asyncio.run(measure(url, filled, a.rooms, a.runs, work, transports))
    finally:
        if server is not None:
            server.stop()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    rev = subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[2]), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=False).stdout.strip()
    print(f"\nMachine: {os.cpu_count()} CPUs (nproc), {mem_gib:.1f} GiB RAM, {platform.platform()}, "
          f"Python {platform.python_version()}, parley {rev}\n")
    print(markdown(results, a.rooms, a.messages))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
