"""The agents' queues hold, over faust's pressure mark, one fetch from every partition."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from meterflow.settings import Settings
from meterflow.stream.app import create_app
from meterflow.stream.backpressure import DEFAULT_QUEUE, stream_buffer_size


@given(st.integers(1, 256), st.integers(1, 5000))
def test_room_over_the_pressure_mark_holds_one_fetch_per_partition(
    partitions: int, max_poll_records: int
) -> None:
    size = stream_buffer_size(partitions, max_poll_records)
    queue: FlowControlQueue[object] = FlowControlQueue(size, flow_control=FlowControlEvent())
    # faust pauses a partition at its first event delivered at or over this mark
    assert size - queue.pressure_high_size >= partitions * max_poll_records + 1
    assert size >= DEFAULT_QUEUE


def test_the_worker_caps_its_fetches_and_sizes_its_queues_from_the_settings() -> None:
    app = create_app(Settings(topic_partitions=12, max_poll_records=300))
    assert app.conf.broker_max_poll_records == 300
    assert app.conf.stream_buffer_maxsize == stream_buffer_size(12, 300)
