"""Run identical load scenarios against Parley and Synapse on this machine, one server at a time.

    python -m tests.load.runner --server synapse --scenario seed            # full-size seed
    python -m tests.load.runner --server synapse --server parley --small    # smoke-sized, all scenarios

Every (server, scenario) pair gets a freshly started server on a fresh PostgreSQL cluster, so runs
do not see each other's data.  Results go to ``--out-dir`` (default tests/load/results/<time>/, which
git ignores): one JSON per run, ``summary.md`` and, with matplotlib installed, PNG plots.

Scenarios (sizes are all parameters):
- seed: users, DMs, groups and one big group; 50 msg/s for 60 s then 100 msg/s for 30 s.
- ramp: the same rooms; raise the rate step by step until delivery p99 > 500 ms or < 99.9%
  delivered; report the highest rate that held.
- initial-sync: one user in R rooms of M members; initial /sync with lazy-loaded members and
  timeline limits 1 and 20.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import servers
from .generator import (
    add_common_args,
    config_from_args,
    initial_sync_table,
    run_initial_sync,
    run_load,
    run_ramp,
)
from .stats import results_table

SCENARIOS = ("seed", "ramp", "initial-sync")

SMALL = {  # a few minutes in total per server on a busy 2-core machine
    "users": 50, "dms": 10, "groups": 2, "group_size": 10, "big_groups": 1, "big_group_size": 30,
    "seed_phases": ["10:10", "20:5"], "ramp": "10:10:60:10", "is_rooms": 10, "is_members": 10,
}


def machine_info() -> dict[str, Any]:
    mem_kb = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
    except OSError:
        pass
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    pg = ""
    try:
        import pgserver  # noqa: F401
        from pgserver._commands import POSTGRES_BIN_PATH
        pg = subprocess.run([str(POSTGRES_BIN_PATH / "postgres"), "--version"], capture_output=True,
                            text=True, check=False).stdout.strip()
    except Exception:  # noqa: BLE001, S110 - informational only
        pass
    return {"nproc": os.cpu_count(), "mem_gb": round(mem_kb / 1024 / 1024, 1), "cpu": cpu,
            "kernel": platform.release(), "python": platform.python_version(), "postgres": pg,
            "loadavg_at_start": os.getloadavg()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m tests.load.runner", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", action="append", choices=["parley", "synapse"],
                    help="server(s) to run, in order (default: parley then synapse)")
    ap.add_argument("--scenario", action="append", choices=SCENARIOS, help="default: all three")
    ap.add_argument("--small", action="store_true", help="smoke-sized defaults (50 users, short phases)")
    add_common_args(ap)
    ap.add_argument("--seed-phase", action="append", default=None, metavar="RATE:SECONDS",
                    help="seed phases (default 50:60 and 100:30)")
    ap.add_argument("--ramp", default=None, metavar="START:STEP:MAX:STEP_SECONDS",
                    help="default 25:25:400:30")
    ap.add_argument("--is-rooms", type=int, default=None, help="initial-sync rooms (default 300)")
    ap.add_argument("--is-members", type=int, default=None, help="initial-sync members per room (default 300)")
    ap.add_argument("--is-messages", type=int, default=3, help="initial-sync messages per room")
    ap.add_argument("--is-repeats", type=int, default=2)
    ap.add_argument("--out-dir", type=Path, default=None)
    ap.add_argument("--work-dir", type=Path, default=None, help="server data (default <out-dir>/work)")
    ap.add_argument("--cache", type=Path, default=servers.DEFAULT_CACHE, help="Synapse venv cache")
    ap.add_argument("--synapse-bcrypt-rounds", type=int, default=12)
    ap.add_argument("--parley-embedded-db", action="store_true",
                    help="let Parley start its own embedded PostgreSQL instead of the runner's")
    ap.add_argument("--parley-set", action="append", default=[], help="extra --set for Parley")
    ap.add_argument("--keep-work", action="store_true", help="keep server data directories")
    a = ap.parse_args(argv)
    # Fill size defaults: full size unless --small; explicit flags always win.
    full = {"seed_phases": ["50:60", "100:30"], "ramp": "25:25:400:30", "is_rooms": 300, "is_members": 300}
    base = SMALL if a.small else full
    if a.small:
        for k in ("users", "dms", "groups", "group_size", "big_groups", "big_group_size"):
            if getattr(a, k) == ap.get_default(k):
                setattr(a, k, SMALL[k])
    a.seed_phase = a.seed_phase or base["seed_phases"]
    a.ramp = a.ramp or base["ramp"]
    a.is_rooms = a.is_rooms or base["is_rooms"]
    a.is_members = a.is_members or base["is_members"]
    a.server = a.server or ["parley", "synapse"]
    a.scenario = a.scenario or list(SCENARIOS)
    return a


async def run_one(srv: servers.RunningServer, scenario: str, a: argparse.Namespace) -> dict[str, Any]:
    cfg = config_from_args(srv.url, a, srv.pids)
    if a.register == "shared-secret":
        cfg.shared_secret = srv.shared_secret
    if scenario == "seed":
        from .generator import parse_phase
        res = await run_load(cfg, [parse_phase(p) for p in a.seed_phase])
        res["scenario"] = "seed"
        return res
    if scenario == "ramp":
        s, st, mx, d = (float(x) for x in a.ramp.split(":"))
        return await run_ramp(cfg, s, st, mx, d, a.ramp_past_failure)
    if scenario == "initial-sync":
        return await run_initial_sync(cfg, a.is_rooms, a.is_members, a.is_messages, repeats=a.is_repeats)
    raise ValueError(scenario)


def summarize_run(res: dict[str, Any]) -> str:
    if res.get("scenario") == "initial_sync":
        return initial_sync_table(res)
    text = results_table(res)
    if res.get("scenario") == "ramp":
        text += f"\n\nhighest rate that held (p99 <= 500 ms, >= 99.9% delivered): {res.get('highest_rate_held')}"
    return text


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwind so servers and PostgreSQL get stopped


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    out = a.out_dir or Path(__file__).resolve().parent / "results" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    work = a.work_dir or out / "work"
    info = machine_info()
    (out / "machine.json").write_text(json.dumps(info, indent=1))
    summary = [f"# Load run {out.name}", "", "Machine: " + json.dumps(info), ""]
    failures = 0
    for name in a.server:
        for scenario in a.scenario:
            label = f"{name}-{scenario}"
            print(f"== {label}: starting {name}", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            load_before = os.getloadavg()
            srv = None
            try:
                srv = servers.start_server(name, work / label, cache=a.cache,
                                           bcrypt_rounds=a.synapse_bcrypt_rounds,
                                           own_postgres=not a.parley_embedded_db, extra_set=a.parley_set)
                startup = time.monotonic() - t0
                res = asyncio.run(run_one(srv, scenario, a))
                res["server"] = {"name": name, "version": srv.version, "url": srv.url,
                                 "startup_s": round(startup, 2)}
                res["machine"] = info
                # The machine may be shared: the 1/5/15-minute load averages before and after the run.
                res["loadavg"] = {"before": [round(x, 2) for x in load_before],
                                  "after": [round(x, 2) for x in os.getloadavg()]}
                res["sizes"] = {k: getattr(a, k) for k in ("users", "dms", "groups", "group_size",
                                                            "big_groups", "big_group_size")}
                (out / f"{label}.json").write_text(json.dumps(res, indent=1))
                text = summarize_run(res)
                text += (f"\n\nload average (1/5/15 min) before: {res['loadavg']['before']}, "
                         f"after: {res['loadavg']['after']}")
                print(text, flush=True)
                summary += [f"## {name} {srv.version}: {scenario}", "", text, ""]
            except Exception as e:  # noqa: BLE001 - record and go on with the next run
                failures += 1
                msg = f"{label} failed: {e!r}"
                print(msg, file=sys.stderr, flush=True)
                summary += [f"## {name}: {scenario}", "", f"FAILED: {e!r}", ""]
                if srv and srv.log_path:
                    summary += [f"(server log: {srv.log_path})", ""]
            finally:
                if srv is not None:
                    srv.stop()
                if not a.keep_work and not failures:
                    import shutil
                    shutil.rmtree(work / label, ignore_errors=True)
    (out / "summary.md").write_text("\n".join(summary) + "\n")
    try:
        from .plot import plot_dir
        for png in plot_dir(out):
            print(f"plot: {png}", file=sys.stderr)
    except ImportError:
        print("matplotlib not installed: no plots", file=sys.stderr)
    print(f"results in {out}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
