"""Kafka's default key partitioner (murmur2, as the Java client uses) with the key hashes cached.

aiokafka hashes every key in pure Python: a twentieth of the worker's time per record in the
profile. Results are keyed by `location_id`, a few thousand distinct keys, so a bounded cache
of their hashes makes the lookup nearly free while every key lands on exactly the partition the
default partitioner (and any Java client) would choose.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=1 << 16)
def _positive_murmur2(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def cached_murmur2_partitioner(
    key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
) -> int:
    """Same contract and choice as `aiokafka.partitioner.DefaultPartitioner`."""
    if key is None:  # keyless: spread like the default (not a security use of random)
        return random.choice(available or all_partitions)
    return all_partitions[_positive_murmur2(key) % len(all_partitions)]
