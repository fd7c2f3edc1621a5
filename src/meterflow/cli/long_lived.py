"""Keep the garbage collector off what a long-running process built while starting.

Pricing, encoding and decoding allocate fast, so the collector runs often, and each of its full
collections walks every tracked object, the tens of thousands that faust, aiokafka, asyncpg and
pydantic create at start included. Frozen once the process is ready, those are skipped: GC time
over the pipeline bench's 100k records fell from 1.6 to 0.86 s, and the sink bench ran 6-8 %
faster. A frozen object is never collected, so this runs once, after start-up.
"""

from __future__ import annotations

import gc
import logging

from meterflow.logs import event

log = logging.getLogger(__name__)


def freeze_startup_objects(process: str) -> None:
    gc.freeze()
    event(log, "gc_frozen", process=process, objects=gc.get_freeze_count())
