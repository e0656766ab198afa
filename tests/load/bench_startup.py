"""Benchmark (issue 2): server start-up time, logins/s at bcrypt cost 12, whoami/s.

Not a test. Everything runs on this machine over loopback HTTP:

    python tests/load/bench_startup.py                      # Parley only
    python tests/load/bench_startup.py --synapse            # and Synapse (installed into the load tool's cache venv)
    python tests/load/bench_startup.py --runs 3 --logins 100 --whoamis 5000

Start-up: wall time from spawning the server process to the first 200 answer of
`GET /_matrix/client/versions` (polled every 5 ms), then SIGTERM and wait for exit. Parley is
started as `python -m homeserver run --data-dir D --listen 127.0.0.1:PORT`:
- "embedded": no database.url, so the run starts (and on a fresh directory first creates) the
  embedded PostgreSQL inside D; "fresh" is a new empty D each run, "existing" reuses one D.
- "external": database.url points at an already-running PostgreSQL (the same kind the load tool
  gives Synapse); "fresh" is a new empty database each run, "existing" reuses one.
Synapse is only measured against an already-running PostgreSQL (that is how it is deployed);
its signing key is generated beforehand, outside the timing.

Throughput: one server (default bcrypt cost 12, rate limits off), `--users` registered users, then
`--logins` password logins with `--concurrency` requests in flight, then `--whoamis` whoami requests
with `--whoami-concurrency` in flight over keep-alive connections. The client shares the CPUs
with the server, so on a small machine these are lower bounds.

Results are printed as Markdown (see spec/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.load import servers
from tests.load.client import MatrixClient, User, new_session

PASSWORD = "bench password 12"


def first_answer(url: str, proc: subprocess.Popen[Any], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} while starting")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:  # OSError: not up yet
            if r.status == 200:
                return
        time.sleep(0.005)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f}s")


def timed_start(cmd: list[str], port: int, *, cwd: Path, log: Path,
                env: dict[str, str] | None = None) -> tuple[float, float]:
    """Spawn, wait for the first answer, stop. Returns (seconds to first answer, seconds to exit)."""
    url = f"http://127.0.0.1:{port}/_matrix/client/versions"
    with open(log, "ab") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        try:
            first_answer(url, proc)
            up = time.perf_counter() - t0
        except Exception:
            servers.stop_process(proc)
            raise
        t1 = time.perf_counter()
        servers.stop_process(proc, timeout=60)
        down = time.perf_counter() - t1
    return up, down


def parley_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(servers.REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def parley_cmd(data: Path, port: int, db_url: str | None = None, extra: list[str] | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "homeserver", "run", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}"]
    if db_url:
        cmd += ["--set", f"database.url={db_url}"]
    for s in extra or []:
        cmd += ["--set", s]
    return cmd


def wait_postmaster_gone(data: Path, timeout: float = 30) -> None:
    """The embedded cluster is stopped by the server on exit; make sure it is before the next run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(data.rglob("postmaster.pid")):
            return
        time.sleep(0.05)
    raise TimeoutError(f"embedded PostgreSQL in {data} still running after the server exited")


def run_starts(label: str, runs: int, start_one: Callable[[int], tuple[float, float]]) -> dict[str, Any]:
    ups, downs = [], []
    for i in range(runs):
        up, down = start_one(i)
        ups.append(up)
        downs.append(down)
        print(f"  {label} run {i + 1}: up {up:.2f} s, exit {down:.2f} s", flush=True)
    return {"label": label, "ups": ups, "downs": downs}


def parley_startup(work: Path, runs: int, pg: servers.Postgres) -> list[dict[str, Any]]:
    env = parley_env()
    out = []

    def embedded_fresh(i: int) -> tuple[float, float]:
        data = work / f"parley-fresh-{i}"
        port = servers.free_port()
        r = timed_start(parley_cmd(data, port), port, cwd=servers.REPO_ROOT, env=env,
                        log=work / "parley-start.log")
        wait_postmaster_gone(data)
        shutil.rmtree(data, ignore_errors=True)
        return r

    existing = work / "parley-existing"
    port0 = servers.free_port()
    timed_start(parley_cmd(existing, port0), port0, cwd=servers.REPO_ROOT, env=env,
                log=work / "parley-start.log")  # create it once, untimed
    wait_postmaster_gone(existing)

    def embedded_existing(i: int) -> tuple[float, float]:
        port = servers.free_port()
        r = timed_start(parley_cmd(existing, port), port, cwd=servers.REPO_ROOT, env=env,
                        log=work / "parley-start.log")
        wait_postmaster_gone(existing)
        return r

    out.append(run_starts("Parley, embedded PostgreSQL, fresh data dir", runs, embedded_fresh))
    out.append(run_starts("Parley, embedded PostgreSQL, existing data dir", runs, embedded_existing))

    def external_fresh(i: int) -> tuple[float, float]:
        db = pg.create_database(f"parley_fresh_{i}")
        data = work / f"parley-ext-fresh-{i}"
        port = servers.free_port()
        return timed_start(parley_cmd(data, port, db), port, cwd=servers.REPO_ROOT, env=env,
                           log=work / "parley-start.log")

    ext_db = pg.create_database("parley_existing")
    ext_data = work / "parley-ext-existing"
    port0 = servers.free_port()
    timed_start(parley_cmd(ext_data, port0, ext_db), port0, cwd=servers.REPO_ROOT, env=env,
                log=work / "parley-start.log")

    def external_existing(i: int) -> tuple[float, float]:
        port = servers.free_port()
        return timed_start(parley_cmd(ext_data, port, ext_db), port, cwd=servers.REPO_ROOT,
                           env=env, log=work / "parley-start.log")

    out.append(run_starts("Parley, running PostgreSQL, fresh database", runs, external_fresh))
    out.append(run_starts("Parley, running PostgreSQL, existing database", runs, external_existing))
    return out


def synapse_startup(work: Path, runs: int, pg: servers.Postgres) -> list[dict[str, Any]]:
    py = servers.ensure_synapse_venv()
    out = []

    def prepare(name: str, db: str, port: int) -> Path:
        data = work / name
        data.mkdir(parents=True, exist_ok=True)
        cfg = servers.synapse_config(data, port, pg.socket_dir, db, "secret-not-used", 12)
        (data / "homeserver.yaml").write_text(servers._yaml(cfg) + "\n")
        (data / "log.yaml").write_text(
            "version: 1\nformatters:\n  f:\n    format: '%(asctime)s %(name)s %(levelname)s %(message)s'\n"
            f"handlers:\n  file:\n    class: logging.FileHandler\n    filename: {data / 'homeserver.log'}\n"
            "    formatter: f\nroot:\n  level: WARNING\n  handlers: [file]\ndisable_existing_loggers: false\n")
        if not (data / "signing.key").exists():
            subprocess.run([str(py), "-m", "synapse.app.homeserver", "-c", str(data / "homeserver.yaml"),
                            "--generate-keys"], check=True, capture_output=True, cwd=data)
        return data

    def cmd(data: Path, port: int) -> list[str]:
        return [str(py), "-m", "synapse.app.homeserver", "-c", str(data / "homeserver.yaml")]

    def fresh(i: int) -> tuple[float, float]:
        port = servers.free_port()
        pg.create_database(f"synapse_fresh_{i}")
        data = prepare(f"synapse-fresh-{i}", f"synapse_fresh_{i}", port)
        return timed_start(cmd(data, port), port, cwd=data, log=work / "synapse-start.log")

    ports: dict[str, int] = {}

    def existing(i: int) -> tuple[float, float]:
        data = prepare("synapse-existing", "synapse_existing", ports["p"])
        return timed_start(cmd(data, ports["p"]), ports["p"], cwd=data, log=work / "synapse-start.log")

    pg.create_database("synapse_existing")
    ports["p"] = servers.free_port()
    existing(-1)  # create the schema once, untimed
    out.append(run_starts("Synapse, running PostgreSQL, fresh database", runs, fresh))
    out.append(run_starts("Synapse, running PostgreSQL, existing database", runs, existing))
    return out


# -- throughput ---------------------------------------------------------------------------------
async def throughput(url: str, users: int, logins: int, concurrency: int, whoamis: int,
                     whoami_concurrency: int) -> dict[str, float]:
    async with new_session(max(concurrency, whoami_concurrency) + 4) as session:
        c = MatrixClient(url, session)
        tag = str(int(time.time()))[-6:]
        sem = asyncio.Semaphore(concurrency)

        async def reg(i: int) -> User:
            async with sem:
                return await c.register_dummy(f"bench{tag}u{i}", PASSWORD)

        t0 = time.perf_counter()
        made = await asyncio.gather(*(reg(i) for i in range(users)))
        reg_s = time.perf_counter() - t0

        lat: list[float] = []
        tokens: list[str] = []

        async def login(i: int) -> None:
            u = made[i % users]
            async with sem:
                s = time.perf_counter()
                _, body = await c.request("POST", "/_matrix/client/v3/login", body={
                    "type": "m.login.password", "identifier": {"type": "m.id.user", "user": u.localpart},
                    "password": PASSWORD})
                lat.append(time.perf_counter() - s)
            tokens.append(body["access_token"])

        t0 = time.perf_counter()
        await asyncio.gather(*(login(i) for i in range(logins)))
        login_s = time.perf_counter() - t0

        wsem = asyncio.Semaphore(whoami_concurrency)
        wlat: list[float] = []

        async def whoami(i: int) -> None:
            async with wsem:
                s = time.perf_counter()
                await c.request("GET", "/_matrix/client/v3/account/whoami", token=tokens[i % len(tokens)])
                wlat.append(time.perf_counter() - s)

        await asyncio.gather(*(whoami(i) for i in range(min(200, whoamis))))  # warm the connections
        wlat.clear()
        t0 = time.perf_counter()
        await asyncio.gather(*(whoami(i) for i in range(whoamis)))
        who_s = time.perf_counter() - t0

    def pct(xs: list[float], p: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000

    return {
        "register_per_s": users / reg_s,
        "logins_per_s": logins / login_s, "login_p50_ms": pct(lat, 0.5), "login_p99_ms": pct(lat, 0.99),
        "whoami_per_s": whoamis / who_s, "whoami_p50_ms": pct(wlat, 0.5), "whoami_p99_ms": pct(wlat, 0.99),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--logins", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--whoamis", type=int, default=20000)
    ap.add_argument("--whoami-concurrency", type=int, default=64)
    ap.add_argument("--synapse", action="store_true", help="also measure Synapse")
    ap.add_argument("--skip-startup", action="store_true")
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="parley-bench-startup-"))
    pg = servers.Postgres(work / "pg").start()
    starts: list[dict[str, Any]] = []
    tput: dict[str, dict[str, float]] = {}
    versions = {"python": platform.python_version(), "parley": subprocess.run(
        ["git", "-C", str(servers.REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
        check=False).stdout.strip()}
    try:
        names = ["parley", *(["synapse"] if a.synapse else [])]
        for name in names:
            if not a.skip_startup:
                print(f"start-up: {name}", flush=True)
                starts += (parley_startup if name == "parley" else synapse_startup)(work, a.runs, pg)
            print(f"throughput: {name}", flush=True)
            srv = servers.start_server(name, work / f"tput-{name}", bcrypt_rounds=12)
            try:
                versions[name] = srv.version
                tput[name] = asyncio.run(throughput(srv.url, a.users, a.logins, a.concurrency, a.whoamis,
                                                    a.whoami_concurrency))
                print(f"  {tput[name]}", flush=True)
            finally:
                srv.stop()
    finally:
        pg.stop()

    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"\nMachine: {os.cpu_count()} CPUs (nproc), {mem_gib:.1f} GiB RAM, {platform.platform()}; "
          f"versions: {versions}\n")
    if starts:
        print("| server and data | runs | median to first answer (s) | min | max | median exit (s) |")
        print("|---|---|---|---|---|---|")
        for s in starts:
            print(f"| {s['label']} | {len(s['ups'])} | {statistics.median(s['ups']):.2f} | {min(s['ups']):.2f} | "
                  f"{max(s['ups']):.2f} | {statistics.median(s['downs']):.2f} |")
    print(f"\nThroughput: {a.users} users, {a.logins} logins at {a.concurrency} in flight, "
          f"{a.whoamis} whoami at {a.whoami_concurrency} in flight, bcrypt cost 12\n")
    print("| server | registrations/s | logins/s | login p50 / p99 (ms) | whoami/s | whoami p50 / p99 (ms) |")
    print("|---|---|---|---|---|---|")
    for name, t in tput.items():
        print(f"| {name} | {t['register_per_s']:.1f} | {t['logins_per_s']:.1f} | "
              f"{t['login_p50_ms']:.0f} / {t['login_p99_ms']:.0f} | {t['whoami_per_s']:.0f} | "
              f"{t['whoami_p50_ms']:.1f} / {t['whoami_p99_ms']:.1f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
