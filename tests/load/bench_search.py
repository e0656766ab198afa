"""Benchmark: message search and user directory latency over a bulk-loaded corpus.

Not a test. It builds a scratch database (COPY, not the send path: this
measures the queries), then times the search service itself (SQL + history
visibility + serialisation, no HTTP) and the user directory:

    python tests/load/bench_search.py                       # embedded PostgreSQL in a temp folder
    python tests/load/bench_search.py --database-url postgresql://user@host/postgres
    python tests/load/bench_search.py --messages 200000 --users 100000 --reuse

Results are printed as a Markdown table (see spec/benchmarks.md, section "Search").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import string
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from homeserver.config import load_config
from homeserver.services.auth import Requester
from homeserver.services.events import EventSerializer, VisibilityFilter
from homeserver.services.search import SearchService, UserDirectoryService
from homeserver.storage.database import Database, migrate
from homeserver.storage.events import EventStore
from homeserver.storage.search import SearchStore

DB_NAME = "parley_bench_search"
SERVER = "bench"
SEARCHER = f"@searcher:{SERVER}"
DAY_MS = 86_400_000
VOCAB = 30_000


def with_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


def make_vocabulary(rng: random.Random) -> list[str]:
    """Pronounceable made-up words (so stemming and stop words behave as with prose), most frequent first."""
    cons, vows = "bcdfghjklmnprstvz", "aeiou"
    words: set[str] = set()
    while len(words) < VOCAB:
        n = rng.choice((2, 2, 3, 3, 4))
        words.add("".join(rng.choice(cons) + rng.choice(vows) for _ in range(n)) + rng.choice(("", "n", "r", "s", "t")))
    ordered = sorted(words)
    rng.shuffle(ordered)
    return ordered


async def load(conn: asyncpg.Connection, args: argparse.Namespace, vocab: list[str]) -> None:
    rng = np.random.default_rng(7)
    t0 = time.perf_counter()
    await conn.execute("SET maintenance_work_mem = '512MB'")
    await conn.execute("DROP INDEX IF EXISTS event_search_vector")
    rooms = [f"!room{i}:{SERVER}" for i in range(args.rooms)]
    await conn.copy_records_to_table(
        "rooms", records=[(r, "10", f"@u0:{SERVER}", 0, False) for r in rooms],
        columns=["room_id", "room_version", "creator", "created_ts", "is_public"],
    )
    public = set(range(args.rooms - 10, args.rooms))  # the last 10 rooms have join_rule public
    await conn.copy_records_to_table(
        "room_search_settings",
        records=[(r, "public" if i in public else "invite", "shared") for i, r in enumerate(rooms)],
        columns=["room_id", "join_rule", "history_visibility"],
    )
    # The searcher joined rooms 0..user_rooms-1 before any message: one member event per room.
    stream = 1
    member_events = []
    for i in range(args.user_rooms):
        pdu = {"type": "m.room.member", "state_key": SEARCHER, "sender": SEARCHER, "room_id": rooms[i],
               "content": {"membership": "join"}, "origin_server_ts": 0, "depth": 1}
        member_events.append((stream, 1, f"$m{i}", rooms[i], "m.room.member", SEARCHER, SEARCHER, 0,
                              json.dumps(pdu), "join"))
        stream += 1
    await conn.copy_records_to_table(
        "events", records=member_events,
        columns=["stream_ordering", "topological_ordering", "event_id", "room_id", "type", "state_key", "sender",
                 "origin_server_ts", "json", "membership"],
    )
    await conn.copy_records_to_table(
        "room_memberships",
        records=[(rooms[i], SEARCHER, "join", f"$m{i}", i + 1, SEARCHER) for i in range(args.user_rooms)],
        columns=["room_id", "user_id", "membership", "event_id", "stream_ordering", "sender"],
    )
    print(f"  rooms and memberships {time.perf_counter() - t0:.1f}s", flush=True)

    # Messages: Zipf-distributed words, 4-20 per message, over 90 days, rooms of uneven activity.
    await conn.execute(
        "CREATE UNLOGGED TABLE IF NOT EXISTS bench_msgs (stream BIGINT, room TEXT, sender TEXT, ts BIGINT, body TEXT)"
    )
    await conn.execute("TRUNCATE bench_msgs")
    words = np.array(vocab, dtype=object)
    room_weights = rng.zipf(1.3, size=args.rooms).astype(float)
    room_weights = np.minimum(room_weights, 50)
    room_weights /= room_weights.sum()
    start_ts = 1_700_000_000_000
    chunk = 100_000
    done = 0
    while done < args.messages:
        n = min(chunk, args.messages - done)
        lengths = rng.integers(4, 21, size=n)
        ranks = rng.zipf(1.15, size=int(lengths.sum()))
        ranks = np.where(ranks > VOCAB, rng.integers(1, VOCAB, size=ranks.shape), ranks) - 1
        tokens = words[ranks]
        room_idx = rng.choice(args.rooms, size=n, p=room_weights)
        sender_idx = rng.integers(0, args.users, size=n)
        records = []
        pos = 0
        for k in range(n):
            ln = int(lengths[k])
            body = " ".join(tokens[pos:pos + ln])
            pos += ln
            s = stream + done + k
            records.append((s, rooms[room_idx[k]], f"@u{sender_idx[k]}:{SERVER}",
                            start_ts + (s * 90 * DAY_MS) // args.messages, body))
        await conn.copy_records_to_table("bench_msgs", records=records, columns=["stream", "room", "sender", "ts", "body"])
        done += n
    print(f"  generated and copied {args.messages} messages {time.perf_counter() - t0:.1f}s", flush=True)
    await conn.execute(
        "INSERT INTO events (stream_ordering, topological_ordering, event_id, room_id, type, sender, origin_server_ts, json)"
        " SELECT stream, stream, '$e' || stream, room, 'm.room.message', sender, ts,"
        "  json_build_object('type', 'm.room.message', 'room_id', room, 'sender', sender, 'origin_server_ts', ts,"
        "   'depth', stream, 'content', json_build_object('msgtype', 'm.text', 'body', body))::text"
        " FROM bench_msgs"
    )
    print(f"  events rows {time.perf_counter() - t0:.1f}s", flush=True)
    await conn.execute(
        "INSERT INTO event_search (stream_ordering, event_id, room_id, sender, type, key, origin_server_ts, vector)"
        " SELECT stream, '$e' || stream, room, sender, 'm.room.message', 'content.body', ts,"
        "  to_tsvector('english', body) FROM bench_msgs"
    )
    print(f"  event_search rows {time.perf_counter() - t0:.1f}s", flush=True)
    await conn.execute("CREATE INDEX event_search_vector ON event_search USING gin (vector)")
    print(f"  GIN index {time.perf_counter() - t0:.1f}s", flush=True)
    await conn.execute("DROP TABLE bench_msgs")

    # Users: syllable names, each in 3 rooms; the directory joins users, profiles, room_memberships.
    prng = random.Random(11)
    first = make_vocabulary(prng)[:3000]
    users, profiles, memberships = [], [], []
    for i in range(args.users):
        local = f"{prng.choice(first)}{i}"
        users.append((f"@{local}:{SERVER}", local, 0))
        profiles.append((f"@{local}:{SERVER}", f"{prng.choice(first).title()} {prng.choice(first).title()}"))
        for r in prng.sample(range(args.rooms), 3):
            memberships.append((rooms[r], f"@{local}:{SERVER}", "join", f"$j{i}_{r}", 0, f"@{local}:{SERVER}"))
    users.append((SEARCHER, "searcher", 0))
    profiles.append((SEARCHER, "The Searcher"))
    await conn.copy_records_to_table("users", records=users, columns=["user_id", "localpart", "created_ts"])
    await conn.copy_records_to_table("profiles", records=profiles, columns=["user_id", "displayname"])
    await conn.copy_records_to_table(
        "room_memberships", records=memberships,
        columns=["room_id", "user_id", "membership", "event_id", "stream_ordering", "sender"],
    )
    print(f"  {args.users} users {time.perf_counter() - t0:.1f}s", flush=True)
    await conn.execute("VACUUM ANALYZE")
    print(f"  vacuum analyze; load total {time.perf_counter() - t0:.1f}s", flush=True)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def timed(fn: Any, items: list[Any]) -> tuple[list[float], list[Any]]:
    out, results = [], []
    for it in items:
        t = time.perf_counter()
        results.append(await fn(it))
        out.append((time.perf_counter() - t) * 1000)
    return out, results


async def bench(db: Database, args: argparse.Namespace, vocab: list[str], url: str) -> None:
    events = EventStore(db)
    store = SearchStore(db)
    search = SearchService(store, events, None, EventSerializer(events, cache_size=0), VisibilityFilter(db))  # type: ignore[arg-type]
    me = Requester(user_id=SEARCHER, device_id="BENCH")
    rng = random.Random(3)
    n = args.queries
    # Word frequency rank classes (Zipf 1.15 over 30k words); stems of made-up words are themselves.
    classes = {
        "common word (rank 1-20)": [vocab[rng.randrange(0, 20)] for _ in range(n)],
        "mid word (rank 200-2000)": [vocab[rng.randrange(200, 2000)] for _ in range(n)],
        "rare word (rank 10k-30k)": [vocab[rng.randrange(10_000, VOCAB)] for _ in range(n)],
        "two words (mid + common)": [f"{vocab[rng.randrange(200, 2000)]} {vocab[rng.randrange(0, 50)]}" for _ in range(n)],
    }
    print("\n| query | order_by | p50 ms | p99 ms | mean hits/page | mean count |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    # Warm the caches once (a busy server has its hot index pages in memory).
    for term in classes["mid word (rank 200-2000)"][:5]:
        await search.search(me, {"search_categories": {"room_events": {"search_term": term}}}, None)
    for label, terms in classes.items():
        for order in ("rank", "recent"):
            async def one(term: str, order: str = order) -> Any:
                body = {"search_categories": {"room_events": {"search_term": term, "order_by": order}}}
                return (await search.search(me, body, None))["search_categories"]["room_events"]
            times, res = await timed(one, terms)
            hits = statistics.mean(len(r["results"]) for r in res)
            count = statistics.mean(r["count"] for r in res)
            print(f"| {label} | {order} | {pct(times, 50):.1f} | {pct(times, 99):.1f} | {hits:.1f} | {count:.0f} |",
                  flush=True)

    config = load_config(None, environ={}, data_dir=Path(tempfile.gettempdir()))
    all_config = load_config(None, environ={}, sets=["user_directory.search_all_users=true"],
                             data_dir=Path(tempfile.gettempdir()))
    async with db.connection() as conn:
        sample = await conn.fetch("SELECT localpart, displayname FROM users JOIN profiles USING (user_id)"
                                  " ORDER BY random() LIMIT $1", n)
    dir_classes = {
        "2-letter prefix": [r["displayname"][:2] for r in sample],
        "4-letter prefix": [r["displayname"][:4] for r in sample],
        "full display name": [r["displayname"] for r in sample],
        "localpart": [r["localpart"] for r in sample],
        "substring (mid-word)": [r["displayname"].split()[1][1:4] for r in sample],
        "no match": ["".join(rng.choice(string.ascii_lowercase) for _ in range(6)) + "qx" for _ in sample],
    }
    print("\n| directory query | search_all_users | p50 ms | p99 ms | mean results |")
    print("| --- | --- | ---: | ---: | ---: |")
    for all_users, cfg in ((False, config), (True, all_config)):
        directory = UserDirectoryService(cfg, store)
        for label, terms in dir_classes.items():
            async def find(term: str, d: UserDirectoryService = directory) -> Any:
                return await d.search(me, {"search_term": term, "limit": 10})
            times, res = await timed(find, terms)
            mean = statistics.mean(len(r["results"]) for r in res)
            print(f"| {label} | {str(all_users).lower()} | {pct(times, 50):.1f} | {pct(times, 99):.1f} | {mean:.1f} |",
                  flush=True)
    async with db.connection() as conn:
        size = await conn.fetchrow(
            "SELECT pg_size_pretty(pg_total_relation_size('event_search')) AS t,"
            " pg_size_pretty(pg_relation_size('event_search_vector')) AS g,"
            " (SELECT extversion FROM pg_extension WHERE extname = 'pg_trgm') AS trgm, version() AS v"
        )
    print(f"\nevent_search total {size['t']}, GIN index {size['g']}; pg_trgm: {size['trgm']}; {size['v']}")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", help="a PostgreSQL server (any database); default: embedded, in a temp folder")
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--rooms", type=int, default=1000)
    ap.add_argument("--user-rooms", type=int, default=50)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=100, help="queries per class")
    ap.add_argument("--reuse", action="store_true", help="reuse an already loaded scratch database")
    args = ap.parse_args()

    pg = None
    url = args.database_url
    if url is None:
        from homeserver.infra.embedded_pg import EmbeddedPostgres

        pg = EmbeddedPostgres(Path(os.environ.get("BENCH_PGDATA", tempfile.mkdtemp(prefix="parley-bench-"))) / "pg")
        url = pg.start()
    try:
        vocab = make_vocabulary(random.Random(5))
        admin = await asyncpg.connect(url)
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB_NAME)
        if not (args.reuse and exists):
            await admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME}")
            await admin.execute(f"CREATE DATABASE {DB_NAME}")
        await admin.close()
        bench_url = with_db(url, DB_NAME)
        if not (args.reuse and exists):
            conn = await asyncpg.connect(bench_url)
            await migrate(conn)
            print(f"loading {args.messages} messages in {args.rooms} rooms, {args.users} users", flush=True)
            await load(conn, args, vocab)
            await conn.close()
        db = await Database.connect(bench_url, min_size=1, max_size=2)
        try:
            await bench(db, args, vocab, bench_url)
        finally:
            await db.close()
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    asyncio.run(main())
