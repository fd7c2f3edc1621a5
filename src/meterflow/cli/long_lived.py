"""Keep the garbage collector off what a long-running process built while starting (and, in
the worker, make it run less often).

Pricing, encoding and decoding allocate fast, so the collector runs often, and each of its full
collections walks every tracked object, the tens of thousands that faust, aiokafka, asyncpg and
pydantic create at start included. Frozen once the process is ready, those are skipped: the
worker's GC time over the pipeline bench's 100k records fell from 1.6 to 0.86 s (about 5 % of
its CPU; the records/s change stays within this machine's noise), and the sink bench ran 6-8 %
faster in two pairs of runs. A frozen object is never collected, so this runs once, after
start-up, after collecting what is already garbage.

The worker also raises the young generation's threshold (`MF_WORKER_GC_THRESHOLD`, 10,000
where Python has 700) at the same time. Its batch of 500 results holds ~5,000 containers for a
moment, so at 700 the collector ran every few records and found almost nothing: over ~170,000
records 2,445 young, 222 middle and 21 full collections took 1.7 s (~10 µs a record, a sixth of
the worker's CPU) and freed 2,785 objects. At 10,000: 29, 2 and 1, 0.27 s, each young
collection ~5 ms. The sink keeps its batches' rows alive across collections: at 10,000 its
young collections took twice as long (0.22-0.25 -> 0.43-0.55 s per 100k rows, in-process bench)
and its runs did not get measurably faster, so it and the API keep Python's threshold
(docs/stream.md, "Seventh pass").
"""

from __future__ import annotations

import gc
import logging

from meterflow.logs import event

log = logging.getLogger(__name__)


def freeze_startup_objects(process: str, young_threshold: int | None = None) -> None:
    """Collect, freeze what is left, and set the young generation's threshold when given."""
    gc.collect()
    gc.freeze()
    if young_threshold is not None:
        _, middle, oldest = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, oldest)
    event(
        log,
        "gc_frozen",
        process=process,
        objects=gc.get_freeze_count(),
        threshold=gc.get_threshold()[0],
    )
