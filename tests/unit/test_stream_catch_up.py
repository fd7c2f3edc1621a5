"""ProfilesCatchUp: pricing of a partition waits until its profiles are applied."""

from __future__ import annotations

import asyncio

import pytest

from meterflow.stream.catch_up import CatchUpInterruptedError, ProfilesCatchUp


def gate(
    ends: dict[int, int],
    committed: dict[int, int] | None = None,
    asked: list[int] | None = None,
    flowing: list[bool] | None = None,
) -> ProfilesCatchUp:
    async def end_offsets(partition: int) -> dict[int, int]:
        if asked is not None:
            asked.append(partition)
        return dict(ends)

    return ProfilesCatchUp(
        end_offsets=end_offsets,
        committed_offset=lambda p: (committed or {}).get(p),
        max_wait_s=5,
        flow_active=lambda: flowing is None or flowing[0],
    )


async def test_waits_until_the_last_profile_of_the_partition_is_applied() -> None:
    subject = gate({0: 3})
    waiting = asyncio.create_task(subject.wait(0))
    subject.applied(0, 0)
    subject.applied(0, 1)
    await asyncio.sleep(0.05)
    assert not waiting.done()
    subject.applied(0, 2)
    await asyncio.wait_for(waiting, timeout=1)


async def test_empty_or_already_committed_partitions_do_not_wait() -> None:
    subject = gate({0: 0, 1: 10}, committed={1: 10})
    await asyncio.wait_for(subject.wait(0), timeout=1)
    await asyncio.wait_for(subject.wait(1), timeout=1)


async def test_a_rebalance_checks_again_against_the_new_end() -> None:
    ends = {0: 1}
    subject = gate(ends)
    subject.applied(0, 0)
    await asyncio.wait_for(subject.wait(0), timeout=1)
    ends[0] = 2
    await asyncio.wait_for(subject.wait(0), timeout=1)  # ready until the next assignment
    subject.reset()
    waiting = asyncio.create_task(subject.wait(0))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    subject.applied(0, 1)
    await asyncio.wait_for(waiting, timeout=1)


async def test_one_request_serves_every_partition_until_the_next_assignment() -> None:
    asked: list[int] = []
    subject = gate({0: 0, 1: 0, 2: 0}, asked=asked)
    for partition in (1, 0, 2):
        await asyncio.wait_for(subject.wait(partition), timeout=1)
    assert asked == [1]
    subject.reset()
    await asyncio.wait_for(subject.wait(2), timeout=1)
    assert asked == [1, 2]


async def test_a_partition_missing_from_the_answer_is_not_held() -> None:
    subject = gate({0: 5})
    await asyncio.wait_for(subject.wait(3), timeout=1)  # logged as skipped, priced at once


async def test_a_rebalance_ends_the_wait_without_making_the_partition_ready() -> None:
    """The revocation empties the profiles agent's queue and waits for the cost agent's batch:
    waiting on for `max_wait_s` per partition kept a worker out of the group (scale-out)."""
    flowing = [True]
    subject = gate({0: 3}, flowing=flowing)
    subject.applied(0, 0)
    waiting = asyncio.create_task(subject.wait(0))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    flowing[0] = False  # faust's flow_control.suspend()
    with pytest.raises(CatchUpInterruptedError):
        await asyncio.wait_for(waiting, timeout=60)  # without the check: returns at max_wait_s
    flowing[0] = True
    subject.reset()
    again = asyncio.create_task(subject.wait(0))  # not taken for caught up
    await asyncio.sleep(0.05)
    assert not again.done()
    subject.applied(0, 2)
    await asyncio.wait_for(again, timeout=1)
