"""PNG plots of delivery latency percentiles against send rate, from runner result JSONs.

    python -m tests.load.plot RESULTS_DIR [--out PNG]
    # several runs (directories or single JSON files) on one plot, e.g. both servers
    python -m tests.load.plot DIR_OR_JSON DIR_OR_JSON ... --out PNG [--title TEXT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .stats import TARGET_P95_MS, TARGET_P99_MS


def points(res: dict[str, Any]) -> list[tuple[float, dict[str, Any]]]:
    """(rate, latency summary) per phase with any deliveries."""
    out = []
    for ph in res.get("phases", []):
        lat = ph["delivery"]["latency"]
        if ph.get("rate") and lat.get("count"):
            out.append((float(ph["rate"]), {**lat, "delivery_rate": ph["delivery"].get("delivery_rate")}))
    return sorted(out, key=lambda p: p[0])


def plot_results(results: list[dict[str, Any]], title: str, png: Path) -> Path:
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    styles = {"p50_ms": ":", "p95_ms": "--", "p99_ms": "-"}
    for res in results:
        pts = points(res)
        if not pts:
            continue
        srv = res.get("server", {})
        mode = res.get("config", {}).get("sync_mode", "longpoll")
        name = f"{srv.get('name', '?')} {srv.get('version', '')} ({res.get('scenario')}, {mode})"
        xs = [p[0] for p in pts]
        line = None
        for key, ls in styles.items():
            ys = [p[1].get(key) for p in pts]
            kw = {"color": line.get_color()} if line is not None else {}
            (ln,) = ax.plot(xs, ys, ls, marker="o", label=f"{name} {key[:-3]}", **kw)
            line = line or ln
        ax2.plot(xs, [100 * (p[1].get("delivery_rate") or 0) for p in pts], marker="o", color=line.get_color(),
                 label=name)
    ax.axhline(TARGET_P99_MS, color="red", lw=0.8, alpha=0.6, label="p99 target 500 ms")
    ax.axhline(TARGET_P95_MS, color="orange", lw=0.8, alpha=0.6, label="p95 target 300 ms")
    ax.set_yscale("log")
    ax.set_ylabel("delivery latency (ms, log)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    ax2.axhline(99.9, color="red", lw=0.8, alpha=0.6)
    ax2.set_ylabel("delivered %")
    ax2.set_xlabel("send rate (messages/s)")
    ax2.grid(True, alpha=0.3)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def load_results(d: Path) -> list[dict[str, Any]]:
    out = []
    for f in ([d] if d.is_file() else sorted(d.glob("*.json"))):
        try:
            res = json.loads(f.read_text())
        except ValueError:
            continue
        if isinstance(res, dict) and res.get("scenario") in ("load", "seed", "ramp"):
            out.append(res)
    return out


def plot_dir(d: Path, png: Path | None = None) -> list[Path]:
    results = load_results(d)
    if not results:
        return []
    users = results[0].get("sizes", {}).get("users") or results[0]["config"]["topology"]["users"]
    return [plot_results(results, f"Delivery latency vs rate ({users} users, {d.name})",
                         png or d / "latency_vs_rate.png")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.load.plot")
    ap.add_argument("results", type=Path, nargs="+", help="results directories or result JSON files")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--title")
    a = ap.parse_args(argv)
    if len(a.results) == 1 and a.results[0].is_dir() and not a.title:
        for p in plot_dir(a.results[0], a.out):
            print(p)
        return 0
    results = [r for d in a.results for r in load_results(d)]
    if not results:
        return 1
    png = a.out or Path("latency_vs_rate.png")
    print(plot_results(results, a.title or "Delivery latency vs rate", png))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
