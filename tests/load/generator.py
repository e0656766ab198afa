"""Matrix load generator: register users, build rooms, hold one sync per user, send on a schedule.

    python -m tests.load.generator --url http://127.0.0.1:8008 --users 50 --dms 10 --groups 2 \
        --group-size 10 --big-group-size 30 --phase 10:15 --out /tmp/load.json

Speaks only the client-server API (plus optional Synapse shared-secret registration), loopback only,
bounded: every phase has a fixed send count and duration, every wait has a deadline.

Syncs can run in worker processes (``--workers N``) so that 1,000 long-polls do not compete with
the sender for one interpreter; workers stamp arrival times themselves and stream
(message id, recipient, latency) triples back to the coordinator, which owns the delivery ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import queue
import random
import resource
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from .client import (
    DEFAULT_SYNC_FILTER,
    SYNC_TRANSPORTS,
    MatrixClient,
    User,
    bounded_gather,
    check_loopback,
    new_session,
)
from .plan import RoomPlan, Topology, pick_senders, plan_rooms
from .procstats import TreeSampler
from .stats import DeliveryLedger, Phase, build_schedule, holds, results_table, summarize

CONTENT_KEY = "parley_load"


@dataclass
class LoadConfig:
    url: str
    topology: Topology = field(default_factory=Topology)
    register: str = "dummy"  # "dummy" | "shared-secret"
    shared_secret: str | None = None
    password: str = "load-password-1"
    prefix: str = ""  # localpart prefix; unique per run by default
    seed: int = 0
    setup_concurrency: int = 16
    workers: int = 0  # 0: syncs in this process
    sync_mode: str = "longpoll"
    sync_timeout_ms: int = 30000
    sync_jitter: bool = False  # de-phase the users' long-poll timeouts (see LongPollSync)
    sync_filter: str = DEFAULT_SYNC_FILTER
    initial_sync_concurrency: int = 32
    send_timeout: float = 30.0
    max_inflight_sends: int = 2000
    drain_timeout: float = 15.0  # after a phase: wait at most this long for outstanding deliveries
    poisson: bool = False
    server_pids: list[int] = field(default_factory=list)
    max_run_seconds: float = 3600.0  # hard bound on one generator's life
    settle_s: float = 10.0  # after all syncs are up: let the login/presence burst settle before sending

    def __post_init__(self) -> None:
        self.url = check_loopback(self.url)
        if not self.prefix:
            self.prefix = "ld" + uuid.uuid4().hex[:6]


def message_content(run: str, msg_id: str, t0: float) -> dict[str, Any]:
    # Integers only: event content is canonical JSON, which has no floats.
    return {"msgtype": "m.text", "body": f"load {msg_id}",
            CONTENT_KEY: {"run": run, "id": msg_id, "t0_us": int(t0 * 1_000_000)}}


def extract_arrivals(run: str, recipient: str, now: float,
                     per_room: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str, float]]:
    """(msg id, recipient, latency ms) for this run's messages in a sync batch, own echoes skipped."""
    out = []
    for evs in per_room.values():
        for ev in evs:
            c = ev.get("content")
            if not isinstance(c, dict):
                continue
            tag = c.get(CONTENT_KEY)
            if not isinstance(tag, dict) or tag.get("run") != run or ev.get("sender") == recipient:
                continue
            out.append((tag["id"], recipient, now * 1000.0 - tag["t0_us"] / 1000.0))
    return out


# ---------------------------------------------------------------------------------------------
# Sync side (in-process or in worker processes)


async def _sync_users(url: str, users: list[User], run: str, mode: str, timeout_ms: int, filter_json: str,
                      init_conc: int, emit: Any, stop: asyncio.Event, deadline: float,
                      on_ready: Any, jitter: bool = False) -> dict[str, Any]:
    session = new_session(len(users) + 8)
    client = MatrixClient(url, session)
    transports = [SYNC_TRANSPORTS[mode](client, timeout_ms=timeout_ms, filter_json=filter_json, jitter=jitter)
                  for _ in users]
    t0 = time.monotonic()
    try:
        sinces = await bounded_gather(init_conc, list(range(len(users))),
                                      lambda i: transports[i].initial(users[i]))
        init_s = time.monotonic() - t0
        on_ready(init_s)

        def make_cb(u: User) -> Any:
            def cb(now: float, per_room: dict[str, list[dict[str, Any]]]) -> None:
                arr = extract_arrivals(run, u.user_id, now, per_room)
                if arr:
                    emit(arr)
            return cb

        tasks = [asyncio.create_task(transports[i].run(users[i], sinces[i], make_cb(users[i]), stop, deadline))
                 for i in range(len(users))]
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([stopper, *tasks], timeout=max(0.0, deadline - time.monotonic()),
                           return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        stopper.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
    finally:
        await session.close()
    counters = {"requests": 0, "errors": 0, "bytes": 0, "limited": 0}
    for tr in transports:
        for k in counters:
            counters[k] += getattr(tr.counters, k)
    counters["initial_sync_s"] = round(init_s, 3)
    return counters


def _fast_loop() -> None:
    """uvloop in the sync workers where installed: the generator's own overhead (parsing and
    timestamping hundreds of responses per fan-out) should not be what is measured."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _worker_main(wid: int, url: str, users: list[tuple[str, str, str]], run: str, mode: str, timeout_ms: int,
                 filter_json: str, init_conc: int, out_q: Any, stop_evt: Any, max_seconds: float,
                 jitter: bool = False) -> None:
    """Entry point of a sync worker process."""

    async def main() -> None:
        stop = asyncio.Event()
        buf: list[tuple[str, str, float]] = []
        deadline = time.monotonic() + max_seconds

        def emit(arr: list[tuple[str, str, float]]) -> None:
            buf.extend(arr)

        async def pump() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.05)
                if buf:
                    out_q.put(("arrivals", wid, buf[:]))
                    buf.clear()
                if stop_evt.is_set() or time.monotonic() > deadline:
                    stop.set()

        pumper = asyncio.create_task(pump())
        counters = await _sync_users(url, [User(*u) for u in users], run, mode, timeout_ms, filter_json,
                                     init_conc, emit, stop, deadline,
                                     lambda s: out_q.put(("ready", wid, s)), jitter)
        stop.set()
        await pumper
        if buf:
            out_q.put(("arrivals", wid, buf[:]))
        ru = resource.getrusage(resource.RUSAGE_SELF)
        counters["cpu_s"] = round(ru.ru_utime + ru.ru_stime, 2)
        counters["max_rss_mb"] = round(ru.ru_maxrss / 1024, 1)
        out_q.put(("done", wid, counters))

    try:
        _fast_loop()
        asyncio.run(main())
    except BaseException as e:  # noqa: BLE001 - report, never hang the coordinator
        out_q.put(("error", wid, repr(e)))


# ---------------------------------------------------------------------------------------------
# Coordinator


class LoadGenerator:
    def __init__(self, cfg: LoadConfig):
        self.cfg = cfg
        self.run_id = cfg.prefix
        self.rooms_plan: list[RoomPlan] = []
        self.users: list[User] = []
        self.room_ids: list[str] = []
        self.setup_times: dict[str, dict[str, Any]] = {}
        self.ledger = DeliveryLedger()
        self._session = None
        self._client: MatrixClient | None = None
        self._sync_stop: asyncio.Event | None = None
        self._sync_task: asyncio.Task[Any] | None = None
        self._procs: list[Any] = []
        self._out_q: Any = None
        self._stop_evt: Any = None
        self._pump_task: asyncio.Task[Any] | None = None
        self._ready: dict[int, float] = {}
        self._done: dict[int, Any] = {}
        self._errors: list[str] = []
        self._send_seq = 0
        self._started = time.monotonic()

    async def __aenter__(self) -> LoadGenerator:  # noqa: PYI034
        self._session = new_session(max(64, self.cfg.setup_concurrency * 2, 256))
        self._client = MatrixClient(self.cfg.url, self._session)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_syncs()
        if self._session:
            await self._session.close()

    @property
    def client(self) -> MatrixClient:
        assert self._client is not None, "use 'async with LoadGenerator(cfg)'"
        return self._client

    def _timed(self, step: str, count: int, t0: float) -> None:
        self.setup_times[step] = {"count": count, "seconds": round(time.monotonic() - t0, 2)}
        print(f"setup {step}: {count} in {self.setup_times[step]['seconds']} s", file=sys.stderr, flush=True)

    # -- setup ----------------------------------------------------------------------------------

    async def register_users(self, n: int) -> list[User]:
        cfg = self.cfg
        t0 = time.monotonic()

        async def reg(i: int) -> User:
            lp = f"{cfg.prefix}_{i}"
            if cfg.register == "shared-secret":
                assert cfg.shared_secret, "shared-secret registration needs --shared-secret"
                return await self.client.register_shared_secret(lp, cfg.password, cfg.shared_secret)
            return await self.client.register_dummy(lp, cfg.password)

        self.users = await bounded_gather(cfg.setup_concurrency, list(range(n)), reg)
        self._timed("register", n, t0)
        return self.users

    async def create_rooms(self, plans: list[RoomPlan]) -> list[str]:
        cfg = self.cfg
        t0 = time.monotonic()

        async def create(p: RoomPlan) -> str:
            creator = self.users[p.members[0]]
            # A unique key in the create event: with room versions whose room ID is the create
            # event's hash (v12), one user creating identical rooms in the same millisecond would
            # otherwise ask for the same room ID twice (Parley answers 500; seen in initial-sync).
            body: dict[str, Any] = {"name": f"{cfg.prefix} {p.key}",
                                    "creation_content": {"io.parley.load.key": f"{cfg.prefix} {p.key}"}}
            if p.kind == "dm":
                body.update(preset="trusted_private_chat", is_direct=True,
                            invite=[self.users[m].user_id for m in p.members[1:]])
            else:
                body.update(preset="public_chat")
            return await self.client.create_room(creator.access_token, body)

        ids = await bounded_gather(cfg.setup_concurrency, plans, create)
        self._timed("create_rooms", len(plans), t0)
        t0 = time.monotonic()
        joins = [(rid, m) for rid, p in zip(ids, plans) for m in p.members[1:]]
        # Interleave rooms so concurrent joins spread over rooms instead of queueing on one.
        random.Random(cfg.seed).shuffle(joins)
        await bounded_gather(cfg.setup_concurrency, joins,
                             lambda j: self.client.join(self.users[j[1]].access_token, j[0]))
        self._timed("join", len(joins), t0)
        return ids

    async def setup(self) -> None:
        topo = self.cfg.topology
        self.rooms_plan = plan_rooms(topo, self.cfg.seed)
        await self.register_users(topo.users)
        self.room_ids = await self.create_rooms(self.rooms_plan)

    # -- syncs ----------------------------------------------------------------------------------

    def _on_arrivals(self, arr: list[tuple[str, str, float]]) -> None:
        for mid, rcpt, ms in arr:
            self.ledger.seen(mid, rcpt, ms)

    async def start_syncs(self, users: list[User] | None = None) -> None:
        """Initial sync for every user, then keep a long-poll open each; returns when all are ready."""
        cfg = self.cfg
        users = self.users if users is None else users
        t0 = time.monotonic()
        budget = cfg.max_run_seconds - (time.monotonic() - self._started)
        if cfg.workers <= 0:
            self._sync_stop = asyncio.Event()
            ready = asyncio.Event()

            def on_ready(s: float) -> None:
                self._ready[0] = s
                ready.set()

            self._sync_task = asyncio.create_task(_sync_users(
                cfg.url, users, self.run_id, cfg.sync_mode, cfg.sync_timeout_ms, cfg.sync_filter,
                cfg.initial_sync_concurrency, self._on_arrivals, self._sync_stop,
                time.monotonic() + budget, on_ready, cfg.sync_jitter))
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait([waiter, self._sync_task], return_when=asyncio.FIRST_COMPLETED)
            if not ready.is_set():
                waiter.cancel()
                self._sync_task.result()  # raises the failure
        else:
            ctx = mp.get_context("spawn")
            self._out_q = ctx.Queue()
            self._stop_evt = ctx.Event()
            n = min(cfg.workers, len(users))
            for w in range(n):
                mine = [(u.user_id, u.access_token, u.localpart) for u in users[w::n]]
                p = ctx.Process(target=_worker_main, daemon=True, name=f"load-sync-{w}", args=(
                    w, cfg.url, mine, self.run_id, cfg.sync_mode, cfg.sync_timeout_ms, cfg.sync_filter,
                    max(1, cfg.initial_sync_concurrency // n), self._out_q, self._stop_evt, budget,
                    cfg.sync_jitter))
                p.start()
                self._procs.append(p)
            self._pump_task = asyncio.create_task(self._pump())
            deadline = time.monotonic() + min(budget, 1800)
            while len(self._ready) < n:
                if self._errors:
                    raise RuntimeError(f"sync worker failed: {self._errors[0]}")
                if time.monotonic() > deadline:
                    raise TimeoutError("sync workers did not become ready")
                await asyncio.sleep(0.05)
        self._timed("initial_sync", len(users), t0)

    async def _pump(self) -> None:
        while True:
            try:
                kind, wid, payload = self._out_q.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.02)
                continue
            if kind == "arrivals":
                self._on_arrivals(payload)
            elif kind == "ready":
                self._ready[wid] = payload
            elif kind == "done":
                self._done[wid] = payload
            elif kind == "error":
                self._errors.append(payload)
                self._done[wid] = {"error": payload}

    async def stop_syncs(self) -> dict[str, Any]:
        counters: dict[str, Any] = {}
        if self._sync_task is not None:
            assert self._sync_stop is not None
            self._sync_stop.set()
            try:
                counters = await asyncio.wait_for(self._sync_task, 60)
            except Exception as e:  # noqa: BLE001 - report, do not mask the run's result
                counters = {"error": repr(e)}
            self._sync_task = None
        if self._procs:
            self._stop_evt.set()
            deadline = time.monotonic() + 60
            while len(self._done) < len(self._procs) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            for p in self._procs:
                p.join(timeout=5)
                if p.is_alive():
                    p.terminate()
            if self._pump_task:
                self._pump_task.cancel()
            # merge per-worker counters
            for c in self._done.values():
                for k, v in c.items():
                    if isinstance(v, (int, float)):
                        counters[k] = round(counters.get(k, 0) + v, 3)
                    else:
                        counters.setdefault(k, v)
            counters["workers"] = len(self._procs)
            self._procs = []
        return counters

    # -- sending --------------------------------------------------------------------------------

    async def run_phases(self, phases: list[Phase], *, drain: bool = True) -> list[dict[str, Any]]:
        """Send on an open-loop schedule over consecutive phases; return one report per phase."""
        cfg = self.cfg
        schedule = build_schedule(phases, poisson=cfg.poisson, seed=cfg.seed + self._send_seq)
        picks = pick_senders(self.rooms_plan, len(schedule), seed=cfg.seed + 7919 + self._send_seq)
        ids_by_phase: list[list[str]] = [[] for _ in phases]
        send_lat: list[list[float]] = [[] for _ in phases]
        errors = [0] * len(phases)
        skipped = [0] * len(phases)
        lags: list[float] = []
        error_samples: list[str] = []
        inflight: set[asyncio.Task[Any]] = set()
        room_members = [frozenset(self.users[m].user_id for m in p.members) for p in self.rooms_plan]

        base_seq = self._send_seq  # ids are fixed now: _send_seq moves on before late sends finish

        def msg_id(k: int) -> str:
            return f"{self.run_id}-{base_seq + k}"

        async def send_one(k: int, phase_idx: int) -> None:
            room_i, sender_i = picks[k]
            sender = self.users[sender_i]
            mid = msg_id(k)
            t0 = time.time()
            m0 = time.monotonic()
            try:
                await self.client.send_message(sender.access_token, self.room_ids[room_i], f"t{mid}",
                                               message_content(self.run_id, mid, t0), timeout=cfg.send_timeout)
            except Exception as e:  # noqa: BLE001 - counted, first few kept for the report
                errors[phase_idx] += 1
                if len(error_samples) < 5:
                    error_samples.append(repr(e)[:300])
                return
            send_lat[phase_idx].append((time.monotonic() - m0) * 1000.0)

        start = time.monotonic() + 0.2
        hard_end = start + sum(p.duration for p in phases) + cfg.send_timeout + 5
        for k, (offset, ph) in enumerate(schedule):
            delay = start + offset - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            lags.append(max(0.0, -delay) * 1000.0)
            # Every scheduled message is expected by the room's other members, whether its send
            # succeeds, fails, times out (and is persisted anyway) or is skipped by the cap:
            # the delivery rate is over what users tried to send, not over what the server acked.
            room_i, sender_i = picks[k]
            mid = msg_id(k)
            ids_by_phase[ph].append(mid)
            self.ledger.expect(mid, room_members[room_i] - {self.users[sender_i].user_id})
            if len(inflight) >= cfg.max_inflight_sends:
                skipped[ph] += 1
                continue
            t = asyncio.create_task(send_one(k, ph))
            inflight.add(t)
            t.add_done_callback(inflight.discard)
        self._send_seq += len(schedule)
        if inflight:
            await asyncio.wait(list(inflight), timeout=max(1.0, hard_end - time.monotonic()))
        if drain:
            await self.drain([m for ids in ids_by_phase for m in ids])
        reports = []
        for i, ph in enumerate(phases):
            dl = self.ledger.report(ids_by_phase[i])
            reports.append({
                "label": ph.label or f"{ph.rate:g}/s",
                "rate": ph.rate,
                "duration_s": ph.duration,
                "send": {"scheduled": sum(1 for _o, p in schedule if p == i),
                         "ok": len(send_lat[i]), "errors": errors[i], "skipped_inflight_cap": skipped[i],
                         "latency": summarize(send_lat[i]).as_dict()},
                "delivery": dl,
                "holds": holds(dl) if dl["expected_pairs"] else False,
            })
        lag = summarize(lags).as_dict()
        for r in reports:
            r["schedule_lag_ms"] = {"p99_ms": lag["p99_ms"], "max_ms": lag["max_ms"]}
            if error_samples:
                r["send"]["error_samples"] = error_samples
        return reports

    async def drain(self, ids: list[str]) -> float:
        """Wait until every expected delivery of ``ids`` arrived, at most ``drain_timeout`` s."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < self.cfg.drain_timeout:
            if self.ledger.outstanding(ids) == 0:
                break
            await asyncio.sleep(0.1)
        return time.monotonic() - t0

    def total_of(self, phases: list[dict[str, Any]], ids: list[str] | None = None) -> dict[str, Any]:
        dl = self.ledger.report(ids)
        ok = sum(p["send"]["ok"] for p in phases)
        return {"label": "total", "rate": None,
                "send": {"ok": ok, "errors": sum(p["send"]["errors"] for p in phases),
                         "skipped_inflight_cap": sum(p["send"].get("skipped_inflight_cap", 0) for p in phases),
                         "latency": {}},
                "delivery": dl}


# ---------------------------------------------------------------------------------------------
# Whole scenarios


def generator_self_usage() -> dict[str, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"coordinator_cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            "coordinator_max_rss_mb": round(ru.ru_maxrss / 1024, 1)}


async def run_load(cfg: LoadConfig, phases: list[Phase]) -> dict[str, Any]:
    """The seed scenario shape: set up, sync everyone, send the phases back to back, report."""
    async with LoadGenerator(cfg) as gen:
        await gen.setup()
        await gen.start_syncs()
        await asyncio.sleep(cfg.settle_s)
        sampler = TreeSampler(cfg.server_pids).start() if cfg.server_pids else None
        reports = await gen.run_phases(phases)
        procs = sampler.stop() if sampler else None
        sync_counters = await gen.stop_syncs()
        result = {
            "scenario": "load",
            "config": _cfg_json(cfg),
            "setup": gen.setup_times,
            "phases": reports,
            "total": gen.total_of(reports),
            "server_processes": procs,
            "sync": sync_counters,
            "generator": {**generator_self_usage(),
                          "sync_workers_cpu_s": sync_counters.get("cpu_s")},
        }
        return result


async def run_ramp(cfg: LoadConfig, start: float, step: float, max_rate: float, step_s: float,
                   past_failure: int = 0) -> dict[str, Any]:
    """Raise the rate step by step until p99 > 500 ms or delivery < 99.9%; report the highest that held.

    ``past_failure`` extra steps are run after the first failing one (more points for the plots);
    the highest rate that held is the last one before the first failure either way.
    """
    async with LoadGenerator(cfg) as gen:
        await gen.setup()
        await gen.start_syncs()
        await asyncio.sleep(cfg.settle_s)
        failed_at: float | None = None
        sampler = TreeSampler(cfg.server_pids).start() if cfg.server_pids else None
        steps: list[dict[str, Any]] = []
        best = None
        rate = start
        t_end = gen._started + cfg.max_run_seconds - 120
        while rate <= max_rate + 1e-9 and time.monotonic() + step_s + cfg.drain_timeout < t_end:
            rep = (await gen.run_phases([Phase(rate, step_s, f"{rate:g}/s")]))[0]
            steps.append(rep)
            print(f"ramp {rate:g}/s: p99={rep['delivery']['latency']['p99_ms']} ms "
                  f"delivered={rep['delivery']['delivery_rate']} holds={rep['holds']}", file=sys.stderr)
            if rep["holds"] and failed_at is None:
                best = rate
            if not rep["holds"] and failed_at is None:
                failed_at = rate
            if failed_at is not None and rate >= failed_at + past_failure * step - 1e-9:
                break
            rate += step
        procs = sampler.stop() if sampler else None
        sync_counters = await gen.stop_syncs()
        return {
            "scenario": "ramp",
            "config": _cfg_json(cfg),
            "ramp": {"start": start, "step": step, "max": max_rate, "step_s": step_s},
            "highest_rate_held": best,
            "setup": gen.setup_times,
            "phases": steps,
            "server_processes": procs,
            "sync": sync_counters,
            "generator": {**generator_self_usage(), "sync_workers_cpu_s": sync_counters.get("cpu_s")},
        }


async def run_initial_sync(cfg: LoadConfig, rooms: int, members: int, messages_per_room: int = 3,
                           limits: tuple[int, ...] = (1, 20), repeats: int = 2) -> dict[str, Any]:
    """A user in ``rooms`` rooms of ``members`` members: time an initial /sync per timeline limit.

    Each measurement uses a different user, so no server-side response cache can answer it.
    """
    async with LoadGenerator(cfg) as gen:
        await gen.register_users(members)
        plans = [RoomPlan(f"is{i}", "group", tuple(range(members))) for i in range(rooms)]
        gen.rooms_plan = plans
        gen.room_ids = await gen.create_rooms(plans)
        t0 = time.monotonic()
        sends = [(r, k) for r in range(rooms) for k in range(messages_per_room)]

        async def send(x: tuple[int, int]) -> None:
            r, k = x
            u = gen.users[(r + k) % members]
            await gen.client.send_message(u.access_token, gen.room_ids[r], f"is{r}-{k}",
                                          {"msgtype": "m.text", "body": f"hello {k}"})

        await bounded_gather(cfg.setup_concurrency, sends, send)
        gen._timed("send_history", len(sends), t0)
        sampler = TreeSampler(cfg.server_pids).start() if cfg.server_pids else None
        timings = []
        user_i = 1
        for limit in limits:
            flt = json.dumps({"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": limit}}},
                             separators=(",", ":"))
            for _ in range(repeats):
                u = gen.users[user_i % members]
                user_i += 1
                m0 = time.monotonic()
                body, size = await gen.client.sync(u.access_token, since=None, timeout_ms=0, filter_json=flt,
                                                   client_timeout=600)
                dt = time.monotonic() - m0
                joined = body.get("rooms", {}).get("join", {})
                timings.append({"timeline_limit": limit, "user": u.user_id, "seconds": round(dt, 3),
                                "bytes": size, "rooms": len(joined)})
                print(f"initial sync limit={limit}: {dt:.2f} s, {size} bytes, {len(joined)} rooms",
                      file=sys.stderr)
        procs = sampler.stop() if sampler else None
        return {"scenario": "initial_sync", "config": _cfg_json(cfg),
                "size": {"rooms": rooms, "members": members, "messages_per_room": messages_per_room},
                "setup": gen.setup_times, "timings": timings, "server_processes": procs}


def _cfg_json(cfg: LoadConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d.pop("shared_secret", None)
    d.pop("password", None)
    return d


def initial_sync_table(res: dict[str, Any]) -> str:
    from .stats import format_table
    rows = [[t["timeline_limit"], t["seconds"], t["bytes"], t["rooms"]] for t in res["timings"]]
    s = res["size"]
    head = f"Initial /sync, lazy-loaded members, {s['rooms']} rooms x {s['members']} members"
    return head + "\n" + format_table(["timeline limit", "seconds", "bytes", "rooms"], rows)


# ---------------------------------------------------------------------------------------------
# CLI


def parse_phase(s: str) -> Phase:
    rate, _, dur = s.partition(":")
    return Phase(float(rate), float(dur or 10), f"{float(rate):g}/s")


def add_common_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--dms", type=int, default=300)
    ap.add_argument("--groups", type=int, default=20)
    ap.add_argument("--group-size", type=int, default=25)
    ap.add_argument("--big-groups", type=int, default=1)
    ap.add_argument("--big-group-size", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2, help="sync worker processes (0 = in-process)")
    ap.add_argument("--sync", choices=sorted(SYNC_TRANSPORTS), default="longpoll")
    ap.add_argument("--register", choices=["dummy", "shared-secret"], default="dummy")
    ap.add_argument("--shared-secret")
    ap.add_argument("--setup-concurrency", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--poisson", action="store_true", help="exponential gaps instead of uniform")
    ap.add_argument("--drain-timeout", type=float, default=15.0)
    ap.add_argument("--max-seconds", type=float, default=3600.0, help="hard bound on the whole run")
    ap.add_argument("--sync-jitter", action="store_true",
                    help="first long-poll of each user waits a random 0..30 s, so timeouts do not come in waves")
    ap.add_argument("--settle", type=float, default=10.0, help="seconds between syncs up and first send")
    ap.add_argument("--ramp-past-failure", type=int, default=0,
                    help="ramp: extra steps after the first failing one (for plots)")


def config_from_args(url: str, a: argparse.Namespace, server_pids: list[int] | None = None) -> LoadConfig:
    topo = Topology(a.users, a.dms, a.groups, a.group_size, a.big_groups, a.big_group_size)
    return LoadConfig(url=url, topology=topo, register=a.register, shared_secret=a.shared_secret,
                      seed=a.seed, setup_concurrency=a.setup_concurrency, workers=a.workers,
                      sync_mode=a.sync, poisson=a.poisson, drain_timeout=a.drain_timeout,
                      server_pids=server_pids or [], max_run_seconds=a.max_seconds, settle_s=a.settle,
                      sync_jitter=a.sync_jitter)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.load.generator", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="homeserver base URL (loopback only)")
    add_common_args(ap)
    ap.add_argument("--phase", action="append", type=parse_phase, default=[],
                    help="RATE:SECONDS, repeatable (default 50:60 then 100:30)")
    ap.add_argument("--ramp", help="START:STEP:MAX:STEP_SECONDS instead of --phase")
    ap.add_argument("--server-pid", type=int, action="append", default=[],
                    help="root pid of a server process tree to measure (repeat for PostgreSQL)")
    ap.add_argument("--out", help="write the JSON result here")
    a = ap.parse_args(argv)
    cfg = config_from_args(a.url, a, a.server_pid)
    if a.ramp:
        s, st, mx, d = (float(x) for x in a.ramp.split(":"))
        res = asyncio.run(run_ramp(cfg, s, st, mx, d, a.ramp_past_failure))
    else:
        res = asyncio.run(run_load(cfg, a.phase or [Phase(50, 60, "50/s"), Phase(100, 30, "100/s")]))
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    print(results_table(res))
    if res.get("scenario") == "ramp":
        print(f"highest rate that held: {res['highest_rate_held']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
