"""Pure core of the load tool: send schedules, percentiles, delivery accounting, result tables.

No I/O and no asyncio here, so all of it is tested with plain values (tests/load/test_stats.py).

Theory of operation:
- The sender is *open loop*: a schedule fixes every send's start offset before the run begins, and a
  send starts at its offset whether or not earlier sends finished.  A slow server therefore shows up
  as growing latency, not as a politely reduced rate (no coordinated omission).
- Every message carries a unique id and its send-start wall-clock time in its content.  A recipient's
  sync stamps the arrival time; delivery latency = arrival - send start.  Delivery accounting is per
  (message, recipient) pair: expected pairs come from the room membership, seen pairs from the syncs;
  a pair seen twice is a duplicate.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: Targets from issue 9 (milliseconds / fraction).
TARGET_AVG_MS = 100.0
TARGET_P95_MS = 300.0
TARGET_P99_MS = 500.0
TARGET_DELIVERY = 0.999


@dataclass(frozen=True)
class Phase:
    """A stretch of constant send rate."""

    rate: float  # messages per second
    duration: float  # seconds
    label: str = ""


def build_schedule(phases: Sequence[Phase], *, poisson: bool = False, seed: int = 0) -> list[tuple[float, int]]:
    """Return (offset_seconds, phase_index) for every send, offsets increasing from 0.

    Uniform spacing by default (send i of a phase at start + i/rate); with ``poisson`` the gaps are
    exponential with the same mean, which models independent users better and exercises bursts.
    The count per phase is exactly round(rate*duration) in uniform mode.
    """
    out: list[tuple[float, int]] = []
    rng = random.Random(seed)
    start = 0.0
    for idx, ph in enumerate(phases):
        if ph.rate <= 0 or ph.duration <= 0:
            start += max(ph.duration, 0.0)
            continue
        if poisson:
            t = start + rng.expovariate(ph.rate)
            while t < start + ph.duration:
                out.append((t, idx))
                t += rng.expovariate(ph.rate)
        else:
            n = round(ph.rate * ph.duration)
            gap = 1.0 / ph.rate
            out.extend((start + i * gap, idx) for i in range(n))
        start += ph.duration
    return out


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Percentile with linear interpolation between closest ranks (numpy's default method).

    ``sorted_values`` must be sorted ascending; returns NaN for an empty sequence.
    """
    n = len(sorted_values)
    if n == 0:
        return math.nan
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile out of range: {p}")
    if n == 1:
        return float(sorted_values[0])
    rank = (p / 100.0) * (n - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, n - 1)
    frac = rank - lo
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac)


@dataclass
class LatencySummary:
    count: int
    avg: float
    p50: float
    p95: float
    p99: float
    max: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            "avg_ms": _r(self.avg),
            "p50_ms": _r(self.p50),
            "p95_ms": _r(self.p95),
            "p99_ms": _r(self.p99),
            "max_ms": _r(self.max),
        }


def _r(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 2)


def summarize(values_ms: Iterable[float]) -> LatencySummary:
    vals = sorted(values_ms)
    if not vals:
        nan = math.nan
        return LatencySummary(0, nan, nan, nan, nan, nan)
    return LatencySummary(
        count=len(vals),
        avg=sum(vals) / len(vals),
        p50=percentile(vals, 50),
        p95=percentile(vals, 95),
        p99=percentile(vals, 99),
        max=vals[-1],
    )


@dataclass
class DeliveryLedger:
    """Who should receive which message, and who did.

    ``expect(msg_id, recipients)`` is called once a send succeeded; ``seen(msg_id, recipient, ms)``
    for every arrival observed in a sync.  Arrivals of ids never registered (a send that timed out
    on our side but was persisted) are kept apart as ``unexpected``.
    """

    expected: dict[str, frozenset[str]] = field(default_factory=dict)
    arrivals: dict[tuple[str, str], float] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    pending_arrivals: dict[tuple[str, str], float] = field(default_factory=dict)

    def expect(self, msg_id: str, recipients: Iterable[str]) -> None:
        self.expected[msg_id] = frozenset(recipients)

    def seen(self, msg_id: str, recipient: str, latency_ms: float) -> None:
        key = (msg_id, recipient)
        if key in self.arrivals or key in self.pending_arrivals:
            self.duplicates[msg_id] = self.duplicates.get(msg_id, 0) + 1
            return
        # The arrival may beat the send's response; keep it until the send registers.
        self.pending_arrivals[key] = latency_ms

    def _settle(self) -> None:
        if not self.pending_arrivals:
            return
        keep: dict[tuple[str, str], float] = {}
        for key, ms in self.pending_arrivals.items():
            if key[0] in self.expected:
                self.arrivals[key] = ms
            else:
                keep[key] = ms
        self.pending_arrivals = keep

    def outstanding(self, msg_ids: Iterable[str] | None = None) -> int:
        """Expected (message, recipient) pairs not yet seen."""
        self._settle()
        ids = self.expected.keys() if msg_ids is None else msg_ids
        missing = 0
        for mid in ids:
            for rcpt in self.expected.get(mid, ()):
                if (mid, rcpt) not in self.arrivals:
                    missing += 1
        return missing

    def report(self, msg_ids: Iterable[str] | None = None) -> dict[str, object]:
        """Delivery statistics over ``msg_ids`` (all registered messages by default)."""
        self._settle()
        ids = list(self.expected.keys() if msg_ids is None else msg_ids)
        idset = set(ids)
        expected_pairs = 0
        delivered = 0
        lat: list[float] = []
        # By the room's size (recipients per message): where a tail comes from.
        by_size: dict[str, list[float]] = {}
        for mid in ids:
            recipients = self.expected.get(mid, ())
            size_class = room_size_class(len(recipients))
            for rcpt in recipients:
                expected_pairs += 1
                ms = self.arrivals.get((mid, rcpt))
                if ms is not None:
                    delivered += 1
                    lat.append(ms)
                    by_size.setdefault(size_class, []).append(ms)
        unexpected = sum(1 for (mid, _r2) in self.pending_arrivals if msg_ids is None or mid in idset)
        dups = sum(self.duplicates.get(mid, 0) for mid in ids)
        rate = delivered / expected_pairs if expected_pairs else math.nan
        return {
            "messages": len(ids),
            "expected_pairs": expected_pairs,
            "delivered_pairs": delivered,
            "delivery_rate": None if math.isnan(rate) else round(rate, 6),
            "duplicates": dups,
            "unexpected_pairs": unexpected,
            "latency": summarize(lat).as_dict(),
            "latency_by_room_size": {k: summarize(v).as_dict() for k, v in sorted(by_size.items())},
        }


def room_size_class(recipients: int) -> str:
    """'1' (a DM), '2-49' (a group), '50+' (a big room): recipients of one message."""
    if recipients <= 1:
        return "1"
    return "2-49" if recipients < 50 else "50+"


def verdict(delivery: dict[str, object]) -> dict[str, bool]:
    """Compare a delivery report with the targets of issue 9."""
    lat = delivery["latency"]
    assert isinstance(lat, dict)

    def ok(key: str, limit: float) -> bool:
        v = lat.get(key)
        return v is not None and v <= limit

    rate = delivery.get("delivery_rate")
    return {
        "avg_under_100ms": ok("avg_ms", TARGET_AVG_MS),
        "p95_under_300ms": ok("p95_ms", TARGET_P95_MS),
        "p99_under_500ms": ok("p99_ms", TARGET_P99_MS),
        "delivered_99_9": isinstance(rate, float | int) and rate >= TARGET_DELIVERY,
    }


def holds(delivery: dict[str, object]) -> bool:
    """The ramp's pass criterion: p99 within 500 ms and at least 99.9% delivered."""
    v = verdict(delivery)
    return v["p99_under_500ms"] and v["delivered_99_9"]


# ---------------------------------------------------------------------------------------------
# Tables


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if abs(v) >= 100:
            return f"{v:.0f}"
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return str(v)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table, columns padded so it also reads well in a terminal."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


PHASE_HEADERS = [
    "phase", "rate/s", "sent ok", "send err", "capped", "send p50", "send p99",
    "deliv avg", "p50", "p95", "p99", "max", "delivered", "dups",
]


def phase_row(name: str, phase: dict[str, object]) -> list[object]:
    send = phase["send"]
    dl = phase["delivery"]
    assert isinstance(send, dict) and isinstance(dl, dict)
    lat = dl["latency"]
    sl = send["latency"]
    assert isinstance(lat, dict) and isinstance(sl, dict)
    rate = dl.get("delivery_rate")
    return [
        name,
        phase.get("rate"),
        send.get("ok"),
        send.get("errors"),
        send.get("skipped_inflight_cap", 0),
        sl.get("p50_ms"),
        sl.get("p99_ms"),
        lat.get("avg_ms"),
        lat.get("p50_ms"),
        lat.get("p95_ms"),
        lat.get("p99_ms"),
        lat.get("max_ms"),
        "-" if rate is None else f"{100 * float(rate):.2f}%",
        dl.get("duplicates", 0),
    ]


def results_table(result: dict[str, object]) -> str:
    """Readable summary of one generator result (see generator.LoadResult.to_json)."""
    out: list[str] = []
    phases = result.get("phases") or []
    assert isinstance(phases, list)
    rows = [phase_row(p.get("label") or f"#{i}", p) for i, p in enumerate(phases)]
    total = result.get("total")
    if isinstance(total, dict):
        rows.append(phase_row("total", total))
    out.append("Latencies in ms. Delivery = send start until the event is in the recipient's sync; "
               "'delivered' counts every scheduled message (failed, timed-out and capped sends included).")
    out.append(format_table(PHASE_HEADERS, rows))
    by_size_rows = []
    for p in [*phases, *([total] if isinstance(total, dict) else [])]:
        delivery = p.get("delivery") if isinstance(p, dict) else None
        for size, lat in ((delivery or {}).get("latency_by_room_size") or {}).items():
            by_size_rows.append([p.get("label") or "total", size, lat.get("count"), lat.get("p50_ms"),
                                 lat.get("p95_ms"), lat.get("p99_ms"), lat.get("max_ms")])
    if by_size_rows:
        out.append("")
        out.append("Delivery by room size (recipients per message):")
        out.append(format_table(["phase", "recipients", "deliveries", "p50", "p95", "p99", "max"], by_size_rows))
    setup = result.get("setup")
    if isinstance(setup, dict) and setup:
        out.append("")
        out.append(format_table(["setup step", "count", "seconds"],
                                [[k, v.get("count"), v.get("seconds")] for k, v in setup.items()
                                 if isinstance(v, dict)]))
    procs = result.get("server_processes")
    if isinstance(procs, dict) and procs.get("processes"):
        out.append("")
        rows2 = [[p["name"], p["pid"], p["cpu_s"], p["peak_rss_mb"]] for p in procs["processes"]]
        rows2.append(["total (peak RSS: sampled sum)", "", procs.get("cpu_s"), procs.get("peak_rss_sum_mb")])
        out.append(format_table(["server process", "pid or count", "cpu s", "peak RSS MB"], rows2))
    gen = result.get("generator")
    if isinstance(gen, dict):
        out.append("")
        out.append("generator: " + ", ".join(f"{k}={_fmt(v)}" for k, v in gen.items()))
    return "\n".join(out)
