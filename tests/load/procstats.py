"""CPU seconds and peak RSS of a server's process tree, read from /proc (Linux only).

Roots are given by pid (the homeserver, the postmaster); every descendant found while sampling is
included, so PostgreSQL backends and worker processes count.  CPU is utime+stime per pid, taken as
(last value seen - value at the start of the window); a process born inside the window counts from
zero.  Peak RSS per process is the kernel's VmHWM high-water mark; the peak of the *sum* of RSS
across the tree is sampled.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def read_stat(pid: int) -> tuple[str, int, float] | None:
    """(comm, ppid, cpu_seconds) for ``pid`` or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    # comm is in parentheses and may contain spaces or parentheses: split at the last ')'.
    lpar, rpar = data.index("("), data.rindex(")")
    comm = data[lpar + 1 : rpar]
    rest = data[rpar + 2 :].split()
    ppid = int(rest[1])
    utime, stime = int(rest[11]), int(rest[12])
    return comm, ppid, (utime + stime) / _CLK


def read_status_kb(pid: int, keys: tuple[str, ...] = ("VmHWM", "VmRSS")) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in keys:
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def cmdline_name(pid: int, comm: str) -> str:
    """A short readable name: 'postgres: checkpointer', 'python synapse.app.homeserver', ..."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            parts = [p.decode(errors="replace") for p in f.read().split(b"\0") if p]
    except OSError:
        return comm
    if not parts:
        return comm
    if comm == "postgres" or parts[0].startswith("postgres"):
        return parts[0] if parts[0].startswith("postgres:") else "postgres (postmaster)"
    if "-m" in parts:
        i = parts.index("-m")
        if i + 1 < len(parts):
            return f"{os.path.basename(parts[0])} -m {parts[i + 1]}"
    return " ".join(os.path.basename(p) for p in parts[:2])[:60]


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = read_stat(int(name))
        if st:
            kids.setdefault(st[1], []).append(int(name))
    return kids


def process_tree(roots: list[int]) -> list[int]:
    kids = children_map()
    seen: list[int] = []
    stack = [r for r in roots if os.path.exists(f"/proc/{r}")]
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.append(pid)
        stack.extend(kids.get(pid, []))
    return seen


@dataclass
class _Proc:
    pid: int
    name: str
    cpu_start: float
    cpu_last: float
    hwm_kb: int = 0


@dataclass
class TreeSampler:
    """Samples a process tree every ``interval`` seconds in a background thread."""

    roots: list[int]
    interval: float = 0.5
    procs: dict[int, _Proc] = field(default_factory=dict)
    peak_rss_sum_kb: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _t0: float = 0.0
    _t1: float = 0.0

    def sample(self, first: bool = False) -> None:
        rss_sum = 0
        for pid in process_tree(self.roots):
            st = read_stat(pid)
            if st is None:
                continue
            comm, _ppid, cpu = st
            mem = read_status_kb(pid)
            rss_sum += mem.get("VmRSS", 0)
            p = self.procs.get(pid)
            if p is None:
                p = self.procs[pid] = _Proc(pid, cmdline_name(pid, comm), cpu if first else 0.0, cpu)
            p.cpu_last = cpu
            p.hwm_kb = max(p.hwm_kb, mem.get("VmHWM", 0), mem.get("VmRSS", 0))
        self.peak_rss_sum_kb = max(self.peak_rss_sum_kb, rss_sum)

    def start(self) -> TreeSampler:
        self._t0 = time.monotonic()
        self.sample(first=True)
        self._thread = threading.Thread(target=self._run, name="proc-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> dict[str, object]:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self.sample()
        self._t1 = time.monotonic()
        return self.report()

    def report(self) -> dict[str, object]:
        rows = []
        for p in sorted(self.procs.values(), key=lambda p: -(p.cpu_last - p.cpu_start)):
            rows.append({
                "pid": p.pid,
                "name": p.name,
                "cpu_s": round(p.cpu_last - p.cpu_start, 2),
                "peak_rss_mb": round(p.hwm_kb / 1024, 1),
            })
        return {
            "window_s": round(self._t1 - self._t0, 2),
            "cpu_s": round(sum(r["cpu_s"] for r in rows), 2),  # type: ignore[misc]
            "peak_rss_sum_mb": round(self.peak_rss_sum_kb / 1024, 1),
            "processes": group_rows(rows),
            "per_pid": rows,
        }


def process_kind(name: str) -> str:
    """Collapse PostgreSQL backends ('postgres: user db [local] idle') into one kind."""
    if name.startswith("postgres: ") and ("[local]" in name or "127.0.0.1" in name):
        return "postgres: backends"
    return name


def group_rows(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """One row per process kind: summed CPU, the largest per-process peak RSS, a count as pid."""
    groups: dict[str, dict[str, object]] = {}
    for r in rows:
        kind = process_kind(str(r["name"]))
        g = groups.get(kind)
        if g is None:
            groups[kind] = {"name": kind, "pid": r["pid"], "count": 1, "cpu_s": r["cpu_s"],
                            "peak_rss_mb": r["peak_rss_mb"]}
        else:
            g["count"] = int(g["count"]) + 1  # type: ignore[call-overload]
            g["pid"] = f"x{g['count']}"
            g["cpu_s"] = round(float(g["cpu_s"]) + float(r["cpu_s"]), 2)  # type: ignore[arg-type]
            g["peak_rss_mb"] = max(float(g["peak_rss_mb"]), float(r["peak_rss_mb"]))  # type: ignore[arg-type]
    return sorted(groups.values(), key=lambda g: -float(g["cpu_s"]))  # type: ignore[arg-type]
