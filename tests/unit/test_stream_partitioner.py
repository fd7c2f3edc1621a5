"""The cached partitioner chooses exactly the partition Kafka's default partitioner chooses."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from meterflow.stream.partitioner import cached_murmur2_partitioner


@given(key=st.binary(max_size=64), partitions=st.integers(min_value=1, max_value=64))
def test_same_partition_as_the_default_for_every_key(key: bytes, partitions: int) -> None:
    all_partitions = list(range(partitions))
    expected = DefaultPartitioner()(key, all_partitions, all_partitions)
    assert cached_murmur2_partitioner(key, all_partitions, all_partitions) == expected
    assert cached_murmur2_partitioner(key, all_partitions, []) == expected  # cached


def test_keyless_records_go_to_an_available_partition() -> None:
    for _ in range(50):
        assert cached_murmur2_partitioner(None, [0, 1, 2, 3], [1, 3]) in {1, 3}
    assert cached_murmur2_partitioner(None, [0, 1], []) in {0, 1}
