"""What the metrics cost the cost agent per record, against the pricing they measure.

Per batch the agent calls `record_consumed`, `pricing_observed` (each record's pricing time,
read with two `perf_counter` calls) and `costs_emitted` (counter + end-to-end histogram); the
figures are per record for batches of `BATCH` records. Figures, on one core, best of three rounds:
- `metrics`: those three calls around a no-op, in calls/s and µs per record;
- `pricing` (baseline, same run): `cost_payload` + `dumps` of a 30-minute TIME_OF_USE record,
  what the agent does per record;
- ratio: metric overhead as a share of the per-record pricing time.
Also one `/metrics` exposition (generate_latest) with the series a busy worker holds.

Run: .venv/bin/python bench/bench_metrics.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest

from meterflow import metrics
from meterflow.costing import cost_payload
from meterflow.models import LocationProfile, dumps

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # shared with the tests
from samples import london, time_of_use

NOW = datetime(2024, 7, 1, tzinfo=UTC)
START = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)
PEAKS = (
    ("00:00", "07:00", "0.09"),
    ("07:00", "16:00", "0.21"),
    ("16:00", "19:00", "0.39"),
    ("19:00", "24:00", "0.24"),
)
PROFILE = LocationProfile.model_validate(
    london(
        time_of_use(*PEAKS, effective_from="2020-01-01T00:00:00Z"),
        location_id="loc_bench",
        account_id="acc_bench",
    )
)
PAYLOAD = dumps(
    {
        "id": "mre_bench",
        "location_id": "loc_bench",
        "energy": "1.25",
        "start_time": START.isoformat(),
        "end_time": (START + timedelta(minutes=30)).isoformat(),
    }
)


def best_rate(fun: Callable[[], None], n: int) -> float:
    """Calls per CPU-second, best of three rounds of `n` calls."""
    best = 0.0
    for _ in range(3):
        started = time.process_time()
        for _ in range(n):
            fun()
        elapsed = time.process_time() - started
        best = max(best, n / elapsed if elapsed > 0 else float("inf"))
    return best


BATCH = 100
TIMESTAMPS = [1_700_000_000.0] * BATCH


def with_metrics() -> None:
    """One batch of `BATCH` records, as the agent reports it."""
    metrics.record_consumed("bench-meter-records", BATCH)
    durations = []
    for _ in range(BATCH):
        started = time.perf_counter()
        durations.append(time.perf_counter() - started)
    metrics.pricing_observed(durations)
    metrics.costs_emitted("meter-records", TIMESTAMPS, now=1_700_000_000.2)


_REFERENCE = CollectorRegistry()
_PRICING = Histogram("p_seconds", "p", buckets=metrics.PRICING_BUCKETS, registry=_REFERENCE)
_LATENCY = Histogram("l_seconds", "l", buckets=metrics.END_TO_END_BUCKETS, registry=_REFERENCE)
_PRICED = Counter("priced", "c", registry=_REFERENCE)


def per_record_histograms() -> None:
    """The same batch with prometheus_client's `Histogram` and `Counter` per record, as the
    agent did before `BatchHistogram` (the reference)."""
    metrics.record_consumed("bench-meter-records", BATCH)
    for _ in range(BATCH):
        started = time.perf_counter()
        _PRICING.observe(time.perf_counter() - started)
        _PRICED.inc()
        _LATENCY.observe(max(0.0, 1_700_000_000.2 - 1_700_000_000.0))


def pricing() -> None:
    result = cost_payload(
        PAYLOAD,
        profiles={"loc_bench": PROFILE}.get,
        market_prices=lambda series, day: None,
        now=NOW,
        max_record_hours=744,
    )
    dumps(result)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a small run")
    args = parser.parse_args()
    n_metrics, n_pricing = (20_000, 2_000) if args.quick else (200_000, 20_000)

    metric_rate = best_rate(with_metrics, n_metrics // BATCH) * BATCH
    reference_rate = best_rate(per_record_histograms, n_metrics // BATCH) * BATCH
    pricing_rate = best_rate(pricing, n_pricing)
    metric_us, pricing_us = 1e6 / metric_rate, 1e6 / pricing_rate
    reference_us = 1e6 / reference_rate
    print(f"metrics per record   {metric_rate:>12,.0f} /s  {metric_us:8.2f} µs")
    print(f"  per-record Histogram {reference_rate:>10,.0f} /s  {reference_us:8.2f} µs  (before)")
    print(f"pricing per record   {pricing_rate:>12,.0f} /s  {pricing_us:8.2f} µs  (baseline)")
    print(f"ratio: metrics add {100 * metric_us / pricing_us:.1f}% to the per-record pricing time")

    # A busy worker: 12 partitions of lag, every dead-letter code, a dozen HTTP routes.
    metrics.set_consumer_lag({("bench-meter-records", p): p * 10 for p in range(12)})
    for route in range(12):
        metrics.observe_http_request("GET", f"/bench/{route}", 200, 0.003)
    started = time.perf_counter()
    rounds = 50 if args.quick else 500
    for _ in range(rounds):
        body = generate_latest(REGISTRY)
    exposition_ms = 1000 * (time.perf_counter() - started) / rounds
    print(f"/metrics exposition  {exposition_ms:8.2f} ms for {len(body):,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
