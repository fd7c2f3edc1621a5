"""Fixes for faust-streaming 0.15.3 (pinned) so that no input record is lost, stuck or priced
twice under another id, around rebalances, restarts and transactional producers; and one for
aiokafka 0.14.0 (`metadata_backoff`), so that a worker waits, not spins, while the broker is down.

`guard_input(app, topic)` is the one entry point: it installs the class-level patches below
(once per process), turns on the per-app ones for the input topic and returns the
`InputGapGuard` the agent loop admits records through. Each fix says in its docstring what it
was seen doing; docs/stream.md ("Faust pitfalls") lists them, with the tests that found them:

- `_install_rewind`: a fresh partition (no committed offset) is rewound to its beginning after
  the post-recovery seek (aiokafka only seeks to committed offsets > 0);
- `_install_never_drop`: faust never drops a refetched input record as "already read";
- `_install_ack_only_tracked`: a record no stream processed is never acked;
- `_install_contiguous_commits`: an input partition is committed only up to its first record
  not processed (faust-streaming #606);
- `_install_committed_means_committed`: `_committed_offset` holds only offsets the group
  took (faust writes a refused commit's there too);
- `_install_inline_delivery`: records reach the streams without four tasks each;
- `_install_worker_consumer_options`: aborted transactions are never read, and a fetch of
  idle partitions is not held for faust's 1.5 s while busy ones wait (`bound_fetch_wait`);
- `_install_refetch_dropped_changelogs`: changelog records fetched across a rebalance and
  dropped are fetched again (the recovery that waited forever for them); `RecoveryStallGuard`
  (`guard_recovery`) is the net: a changelog recovery that stopped moving is sought back;
- `keep_queued_events_on_redundant_resume`: recovery's second `resume()` no longer empties the
  agent's queue (the restart stall);
- `InputGapGuard`: holes in an input partition are fetched again, empty offsets (transaction
  markers) passed, a stalled tail rewound;
- `_install_metadata_backoff` (aiokafka): a failed metadata update waits `retry_backoff_ms`
  before its waiters retry (with the broker down, the worker spun a core and logged 14,000
  lines a second).

Each fix declares with `@BORROWED.patch(...)` the library versions it was written for and the
faust or aiokafka internals it replaces, wraps or reads; `install()` checks them all first and
refuses to start (`BorrowedInternalsError`, naming the patch, the attribute, expected vs
found) when an upgrade changed any of them (docs/stream.md, "Guards on the patched internals").
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import aiokafka
import aiokafka.consumer.fetcher
import aiokafka.producer.sender
import faust.stores.rocksdb as faust_rocksdb
import faust.streams as faust_streams
import faust.transport.consumer as faust_consumer
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import IllegalStateError
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer, ThreadDelegateConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as WorkerConsumer
from faust.types.tuples import Message
from mode.utils.queues import FlowControlEvent

from meterflow._guards import Borrowings, Names, Signature, Value, replace
from meterflow.logs import event as log_event

_log = logging.getLogger(__name__)
_PATCHED = "_meterflow_rewinds_uncommitted"
_PATCHED_READ = "_meterflow_never_drops"
_PATCHED_ACK = "_meterflow_acks_only_tracked"
_PATCHED_COMMIT = "_meterflow_commits_contiguously"
_PATCHED_COMMITTED = "_meterflow_keeps_only_committed_offsets"
_PATCHED_INLINE = "_meterflow_delivers_inline"
_PATCHED_CONSUMER_OPTIONS = "_meterflow_sets_consumer_options"
_PATCHED_REFETCH = "_meterflow_refetches_dropped_changelogs"
_PATCHED_METADATA = "_meterflow_backs_off_failed_metadata"
_PATCHED_RESUME = "_meterflow_resumes_promptly"
READ_COMMITTED_ATTR = "meterflow_read_committed"
FETCH_MAX_WAIT_ATTR = "meterflow_fetch_max_wait_ms"
_EVENT_WAIT_CODE = asyncio.Event.wait.__code__  # faust's `suspend_flow` is an asyncio.Event
_NEXT_OFFSETS_ATTR = "_meterflow_next_offsets"
NO_DROP_TOPICS_ATTR = "meterflow_no_drop_topics"

BORROWED = Borrowings(
    "meterflow.stream.faust_fixes",
    written_for={"faust-streaming": "0.15.3"},
    docs='docs/stream.md, "Guards on the patched internals"',
)
_AIOKAFKA = {"aiokafka": "0.14.0"}
_MODE = {"mode-streaming": "0.7"}  # any 0.7.x (pyproject: <0.8)


class _NeverDropReadOffsets(defaultdict[Any, int | None]):
    """faust's per-partition "read offset", except that it reads as unknown for our input
    topics, so faust never drops a fetched record of them as "already read".

    Seen in the SIGKILL test: after a restart, a fetch loop iteration that was interrupted by a
    rebalance recorded a read offset hundreds of records ahead of the committed offset the new
    generation seeks to; every refetched record below it was then dropped, never priced, and
    later committed past. Redelivering instead is safe here: processing is at-least-once and a
    redelivered record gets the same result id.
    """

    def __init__(self, topics: frozenset[str]) -> None:
        super().__init__(lambda: None)
        self._topics = topics

    def __getitem__(self, tp: Any) -> int | None:
        if tp.topic in self._topics:
            return None
        return super().__getitem__(tp)


def guard_input(app: Any, *topics: str) -> InputGapGuard:
    """Make each of `topics` reach `app`'s agents whole, in order; returns the guard their loops
    admit records through (`with guard.handling(): … await guard.admit(event)`)."""
    install()
    setattr(app, NO_DROP_TOPICS_ATTR, frozenset(topics))
    setattr(app, READ_COMMITTED_ATTR, True)  # records of aborted transactions are never priced
    keep_queued_events_on_redundant_resume(app)
    guard = InputGapGuard(app)
    app.timer(interval=1.0)(guard.rewind_stalled)
    return guard


def install() -> None:
    """Install the class-level patches once per process (idempotent). Most act only on the
    topics an app lists in its `meterflow_no_drop_topics` attribute (see `guard_input`).

    First checks every fix's declared versions and borrowed internals: a worker on a faust it
    was not written for must not start with patches that silently do nothing or harm."""
    BORROWED.check()
    _install_rewind()
    _install_never_drop()
    _install_ack_only_tracked()
    _install_contiguous_commits()
    _install_committed_means_committed()
    _install_inline_delivery()
    _install_worker_consumer_options()
    _install_refetch_dropped_changelogs()
    _install_metadata_backoff()
    _install_prompt_resume()


@BORROWED.patch(
    Signature(AIOKafkaClient, "_metadata_update", "async (self, cluster_metadata, topics)"),
    Names(AIOKafkaClient, "__init__", ("_retry_backoff",)),
    # the loops that wait on a forced update and force the next one at once when it failed
    Names(AIOKafkaClient, "force_metadata_update", ("_md_update_fut",)),
    Names(aiokafka.producer.sender.Sender, "_sender_routine", ("force_metadata_update",)),
    Names(aiokafka.consumer.fetcher.Fetcher, "_fetch_requests_routine", ("force_metadata_update",)),
    also_written_for=_AIOKAFKA,
)
def _install_metadata_backoff() -> None:
    """A failed metadata update (no broker reachable) takes `retry_backoff_ms` (100 ms) before
    it answers. aiokafka's sender and fetcher force an update whenever a partition's leader is
    unknown and wait for it; a failed update answered at once, so with the broker down both
    looped without pause: the worker used a full core and logged "Unable connect to node" and
    "Unable to update metadata" 14,000 times a second (219 MB in two minutes), where the
    API and the sink logged 70 lines. Its waiters now retry ten times a second at most; a
    successful update is not delayed."""
    if getattr(AIOKafkaClient, _PATCHED_METADATA, False):
        return
    original = AIOKafkaClient._metadata_update
    replace(AIOKafkaClient, "_metadata_update", _backing_off(original), original)
    setattr(AIOKafkaClient, _PATCHED_METADATA, True)


_MetadataUpdate = Callable[[Any, Any, Any], Awaitable[bool]]


def _backing_off(original: _MetadataUpdate) -> _MetadataUpdate:
    async def metadata_update(self: Any, cluster_metadata: Any, topics: Any) -> bool:
        updated = await original(self, cluster_metadata, topics)
        if not updated:
            await asyncio.sleep(self._retry_backoff)
        return updated

    return metadata_update


@BORROWED.patch(
    Signature(FlowControlEvent, "resume", "(self)"),
    Signature(FlowControlEvent, "is_active", "(self)"),
    also_written_for=_MODE,
)
def keep_queued_events_on_redundant_resume(app: Any) -> None:
    """Make `app.flow_control.resume()` a no-op while flow is already active.

    `FlowControlEvent.resume` empties every stream queue, to drop events fetched before a
    rebalance. faust's recovery resumes flow once to read changelogs, resumes the stream
    partitions and seeks them, and then calls `resume()` again: every record fetched in
    between (whose fetch position has already moved on) is emptied out of the agent's queue
    without a trace. When no later record arrives on that partition nothing ever shows the
    hole: the restarted worker of the SIGKILL test priced one record and then waited forever
    with the fetcher at the high-water mark. Events queued while flow is active belong to the
    current assignment, so only a resume after a real suspension clears the queues.
    """
    flow_control = app.flow_control
    resume = flow_control.resume

    def resume_if_suspended() -> None:
        if not flow_control.is_active():
            resume()

    flow_control.resume = resume_if_suspended


def _guarded(consumer: Any, tp: Any) -> bool:
    return tp.topic in getattr(consumer.app, NO_DROP_TOPICS_ATTR, ())


@BORROWED.patch(
    Signature(
        Consumer,
        "_commit_offsets",
        "async (self, offsets, start_new_transaction=True)",
        reached_from=WorkerConsumer,
    ),
    # it writes what it tried to commit into `_committed_offset`, committed or not
    Names(Consumer, "_commit_offsets", ("_commit", "_committed_offset")),
)
def _install_committed_means_committed() -> None:
    """`_committed_offset` holds only offsets the group committed.

    faust writes what it tried to commit there whether the commit went through or not (a
    commit refused during a rebalance returns False). Our agents read it as durable: the
    readings agent drops a meter's register points below it (no replay can need them) and the
    profiles catch-up waits for nothing below it, so a refused commit could have them drop a
    point, or skip a wait, that a replay from the real committed offset still needs. On a
    refused commit each partition it wrote is set back to what it held, unless something
    (an assignment reading the group's offsets) wrote it meanwhile."""
    if getattr(Consumer, _PATCHED_COMMITTED, False):
        return
    original: Callable[..., Awaitable[bool]] = Consumer._commit_offsets

    async def commit_offsets(self: Any, offsets: Any, start_new_transaction: bool = True) -> bool:
        held = self._committed_offset
        before = {tp: held.get(tp) for tp in offsets}
        did_commit = await original(self, offsets, start_new_transaction)
        if not did_commit:
            for tp, offset in offsets.items():
                if tp in held and held[tp] == offset != before[tp]:
                    if before[tp] is None:
                        del held[tp]
                    else:
                        held[tp] = before[tp]
        return did_commit

    replace(Consumer, "_commit_offsets", commit_offsets, original)
    setattr(Consumer, _PATCHED_COMMITTED, True)


@BORROWED.patch(
    Signature(Consumer, "_new_offset", "(self, tp)", reached_from=WorkerConsumer),
    Signature(Consumer, "perform_seek", "async (self)", reached_from=WorkerConsumer),
    Signature(WorkerConsumer, "earliest_offsets", "async (self, *partitions)"),
    Signature(WorkerConsumer, "assignment", "(self)"),
    Names(Consumer, "__init__", ("_acked", "_acked_index", "_committed_offset")),
)
def _install_contiguous_commits() -> None:
    """Commit an input partition only up to its first record that was not processed.

    faust's `_new_offset` withholds a commit only when the first acked offset is *more than one*
    past the committed one (faust-streaming #606) and not at all when nothing was committed yet,
    so one unprocessed record at the head of a partition is committed past. For our input topics
    (listed in `meterflow_no_drop_topics`; no compaction gaps there) the next offset to commit
    must itself be acked. A partition without a committed offset starts from its earliest offset
    (`auto_offset_reset="earliest"`), which is made its committed position after every seek, and
    acks left from before the seek are dropped: everything after it is fetched again.
    """
    if getattr(Consumer, _PATCHED_COMMIT, False):
        return
    original_new_offset: Callable[[Any, Any], int | None] = Consumer._new_offset
    original_perform_seek: Callable[[Any], Awaitable[None]] = Consumer.perform_seek

    def new_offset(self: Any, tp: Any) -> int | None:
        if _guarded(self, tp):
            acked = self._acked[tp]
            committed = self._committed_offset[tp]
            if acked:
                if committed is None:
                    return None
                acked.sort()
                while acked and acked[0] < committed:
                    self._acked_index[tp].discard(acked.pop(0))
                if not acked or acked[0] != committed:
                    return None
        return original_new_offset(self, tp)

    async def perform_seek(self: Any) -> None:
        await original_perform_seek(self)
        guarded = [tp for tp in self.assignment() if _guarded(self, tp)]
        for tp in guarded:
            self._acked[tp].clear()
            self._acked_index[tp].clear()
        unknown = [tp for tp in guarded if not self._committed_offset[tp]]
        if unknown:
            earliest = await self.earliest_offsets(*unknown)
            for tp in unknown:
                self._committed_offset[tp] = earliest.get(tp) or 0
        expected: dict[Any, int] = getattr(self, _NEXT_OFFSETS_ATTR, {})
        expected.update({tp: self._committed_offset[tp] for tp in guarded})
        setattr(self, _NEXT_OFFSETS_ATTR, expected)
        _log.info(
            "input_partitions_seeked",
            extra={
                "fields": {
                    "event": "input_partitions_seeked",
                    "committed": {
                        f"{tp.topic}/{tp.partition}": self._committed_offset[tp] for tp in guarded
                    },
                }
            },
        )

    replace(Consumer, "_new_offset", new_offset, original_new_offset)
    replace(Consumer, "perform_seek", perform_seek, original_perform_seek)
    setattr(Consumer, _PATCHED_COMMIT, True)


@BORROWED.patch(
    Signature(
        Consumer, "wait_first", "async (self, *coros, timeout=None)", reached_from=WorkerConsumer
    ),
    # the fetch loop's `wait_first(callback(message), self.suspend_flow.wait())`
    Names(Consumer, "_drain_messages", ("wait_first", "suspend_flow", "wait")),
    Value(faust_consumer, "Event", asyncio.Event),  # `suspend_flow`, told by its wait's code
    also_written_for=_MODE,
)
def _install_inline_delivery() -> None:
    """Deliver a fetched record to the streams without four tasks per record.

    faust's fetch loop hands each record over with
    `wait_first(callback(message), suspend_flow.wait())`, so that a rebalance can abandon a
    delivery stuck on a full stream queue. mode's `wait_first` wraps the callback, the suspend
    event, and the service's stopped and crashed events in a task each and waits on all four:
    a tenth of the worker's time per record in the profile. While flow is not suspended the
    callback is now awaited inline. A delivery that was stuck when a rebalance began then
    completes once its queue has room (the agent keeps draining it) or flow resumes; the
    stream skips such a record of the old generation without acking it, and the seek that
    ends the rebalance fetches it again. Stopping the worker cancels the fetch loop, and the
    inline await with it.
    """
    if getattr(Consumer, _PATCHED_INLINE, False):
        return
    original: Callable[..., Awaitable[Any]] = Consumer.wait_first

    async def wait_first(self: Any, *coros: Any, timeout: Any = None) -> Any:  # noqa: ASYNC109
        if (
            timeout is None
            and len(coros) == 2
            and getattr(coros[1], "cr_code", None) is _EVENT_WAIT_CODE
            and not self.suspend_flow.is_set()
        ):
            callback, suspend_wait = coros
            suspend_wait.close()  # never awaited; closing it avoids a "never awaited" warning
            await callback
            return None  # faust's fetch loop ignores the result
        return await original(self, *coros, timeout=timeout)

    replace(Consumer, "wait_first", wait_first, original)
    setattr(Consumer, _PATCHED_INLINE, True)


def bound_fetch_wait(app: Any, milliseconds: int) -> None:
    """Make `app`'s consumer ask the broker to hold a fetch at most `milliseconds` (faust: 1.5 s).

    aiokafka keeps one fetch in flight per broker, and leaves out of it every partition whose
    records are still buffered. So while the agents work through a fetch of `meter-records`,
    the next fetch goes out for the idle partitions alone (`locations`, `meter-readings`, …),
    and the broker holds it for the whole wait, since none of them has data: the records'
    partitions, drained meanwhile, cannot be fetched until it returns. With faust's 1,500 ms
    a worker priced a fetch's worth of records per 1.5 s and then waited (docs/stream.md,
    pitfall 11); an idle worker only pays one empty fetch per wait instead.
    """
    install()
    setattr(app, FETCH_MAX_WAIT_ATTR, milliseconds)


@BORROWED.patch(
    Signature(AIOKafkaConsumerThread, "_create_worker_consumer", "(self, transport)"),
    Names(aiokafka.AIOKafkaConsumer, "start", ("_isolation_level", "_fetch_max_wait_ms")),
    also_written_for=_AIOKAFKA,
)
def _install_worker_consumer_options() -> None:
    """Two options faust fixes when it makes the worker's aiokafka consumer, from the app:

    - `read_committed` when the app asks (`meterflow_read_committed`, `guard_input`): faust
      reads at `read_uncommitted` unless it produces transactionally itself, so records a
      transactional producer aborted would be priced. At `read_committed` they are skipped like
      commit markers (`InputGapGuard` passes such offsets), and an open transaction holds its
      partition back at the last stable offset until it ends;
    - `fetch_max_wait_ms` (`meterflow_fetch_max_wait_ms`, `bound_fetch_wait`), where faust
      passes a constant 1500.
    """
    if getattr(AIOKafkaConsumerThread, _PATCHED_CONSUMER_OPTIONS, False):
        return
    original: Callable[[Any, Any], Any] = AIOKafkaConsumerThread._create_worker_consumer

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)  # not started: AIOKafkaConsumer.start() reads both
        if getattr(self.app, READ_COMMITTED_ATTR, False):
            consumer._isolation_level = "read_committed"
        wait = getattr(self.app, FETCH_MAX_WAIT_ATTR, None)
        if wait is not None:
            consumer._fetch_max_wait_ms = wait
        return consumer

    replace(AIOKafkaConsumerThread, "_create_worker_consumer", create_worker_consumer, original)
    setattr(AIOKafkaConsumerThread, _PATCHED_CONSUMER_OPTIONS, True)


@BORROWED.patch(
    Signature(Consumer, "_wait_next_records", "async (self, timeout)", reached_from=WorkerConsumer),
    # the batch it returns is dropped whole when flow stopped meanwhile, then a seek to the
    # committed offsets follows (which changelogs do not have)
    Names(Consumer, "getmany", ("_wait_next_records", "flow_active", "perform_seek")),
    Names(faust_consumer.ThreadDelegateConsumer, "__init__", ("_thread",)),
    Names(AIOKafkaConsumerThread, "on_start", ("_consumer",)),
    Signature(AIOKafkaConsumerThread, "call_thread", "async (self, fun, *args, **kwargs)"),
    also_written_for=_AIOKAFKA,
)
def _install_refetch_dropped_changelogs() -> None:
    """Fetch again the changelog records of a batch faust drops because flow stopped.

    A fetch can wait in the consumer thread across a rebalance: aiokafka then hands it the
    records of the partitions just assigned, the changelogs that recovery has just sought to
    where their tables stand. `getmany` sees the flow stopped, drops the whole batch and seeks
    back to the committed offsets, which brings input records back but not changelog ones
    (nothing commits them), so their fetch position stays past the records recovery waits
    for. Seen in the join-and-leave test (~1 run in 10): "No event received for active tp
    …-readings-changelog" forever, the partition's fetch position at its high-water mark.
    Each dropped changelog partition is sought back to the batch's first record unless its
    position is already there or before (another seek came meanwhile). Only ever backwards:
    recovery passes over a record it has applied (`offset > seen_offset`), so a record read
    twice costs nothing.
    """
    if getattr(Consumer, _PATCHED_REFETCH, False):
        return
    original: Callable[[Any, float], Awaitable[Any]] = Consumer._wait_next_records

    async def wait_next_records(self: Any, timeout: float) -> Any:  # noqa: ASYNC109
        records, active_partitions = await original(self, timeout)
        if records and not self.flow_active:  # getmany drops it: no await until it looks
            changelogs = self.app.tables.changelog_topics
            firsts = {
                tp: batch[0].offset
                for tp, batch in records.items()
                if batch and tp.topic in changelogs
            }
            if firsts:
                await refetch_from(self, firsts)
        return records, active_partitions

    replace(Consumer, "_wait_next_records", wait_next_records, original)
    setattr(Consumer, _PATCHED_REFETCH, True)


async def refetch_from(consumer: Any, firsts: Mapping[Any, int]) -> None:
    """Seek each partition of `firsts` back to its offset, on the consumer's thread (where
    aiokafka's seeks and fetches run in turn), if its fetch position is past it."""
    thread = consumer._thread

    async def seek_back() -> dict[Any, int]:
        aio = thread._consumer
        assigned = aio.assignment()
        sought = {}
        for tp, first in firsts.items():
            try:  # `position` returns at once for a positioned partition: no seek between
                if tp in assigned and await aio.position(tp) > first:
                    aio.seek(tp, first)
                    sought[tp] = first
            except IllegalStateError:  # revoked meanwhile: its next owner recovers it
                continue
        return sought

    sought = await thread.call_thread(seek_back)
    if sought:
        log_event(_log, "changelog_refetched", from_offsets=_by_partition(sought))


def _by_partition(offsets: Mapping[Any, int]) -> dict[str, int]:
    return {f"{tp.topic}/{tp.partition}": offset for tp, offset in offsets.items()}


@BORROWED.patch(
    Names(Recovery, "__init__", ("active_tps", "active_offsets", "active_highwaters")),
    Names(Recovery, "_set_recovery_started", ("in_recovery",)),  # from start to end
    # what is left to read: the highwater (last offset to apply) less the offset applied
    Names(Recovery, "active_remaining", ("active_highwaters", "active_offsets")),
)
class RecoveryStallGuard:
    """The net under `refetch_dropped_changelogs`: an active changelog partition whose
    recovery has not moved for `stall_after_s` while faust reads (flow active) and whose
    fetch position is past the last record applied is sought back to the next one.

    A recovery that waits for records already fetched and lost waits forever, and the worker
    with it. Whatever lost them, the partition's offset applied stops moving below its
    high-water mark; a seek back to it is harmless even when nothing was lost (only backwards:
    recovery passes over what it has applied), so a slow partition costs a re-read at worst.
    `guard_recovery(app)` runs `refetch_stalled` every second."""

    def __init__(
        self,
        app: Any,
        *,
        stall_after_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._app = app
        self._stall_after_s = stall_after_s
        self._clock = clock
        self._unmoved: dict[Any, tuple[int, float]] = {}  # tp -> (offset applied, since)

    async def refetch_stalled(self) -> None:
        recovery = self._app.tables.recovery
        if not (recovery.in_recovery and self._app.consumer.flow_active):
            self._unmoved.clear()  # not reading changelogs now (or bulk recovery: not faust)
            return
        now = self._clock()
        unmoved: dict[Any, tuple[int, float]] = {}
        stalled: dict[Any, int] = {}
        for tp in list(recovery.active_tps):
            offset = recovery.active_offsets.get(tp)
            highwater = recovery.active_highwaters.get(tp)
            if offset is None or highwater is None or offset >= highwater:
                continue
            applied, since = self._unmoved.get(tp, (offset, now))
            if applied != offset:
                since = now
            if now - since >= self._stall_after_s:
                stalled[tp] = offset + 1
                since = now  # once per window
            unmoved[tp] = (offset, since)
        self._unmoved = unmoved
        if stalled:
            log_event(
                _log,
                "changelog_recovery_stalled",
                logging.WARNING,
                next_offsets=_by_partition(stalled),
            )
            await refetch_from(self._app.consumer, stalled)


def guard_recovery(app: Any) -> RecoveryStallGuard:
    """Run `RecoveryStallGuard` on `app` (once a second)."""
    BORROWED.check_one("RecoveryStallGuard")
    guard = RecoveryStallGuard(app)
    app.timer(interval=1.0)(guard.refetch_stalled)
    return guard


@BORROWED.patch(
    Names(Recovery, "__init__", ("active_tps",)),  # this worker's tables' changelog partitions
    Names(Recovery, "_set_recovery_started", ("in_recovery",)),  # from start to end
)
def written_changelogs(app: Any) -> Callable[[Any], bool]:
    """Whether a changelog partition is one this worker's own table writes, recovered: faust
    stops reading it then (the table is where its records come from), so its end moves with
    every write while its position stays where recovery left it. Its lag is 0, not the
    count of the table's writes since (`metrics.update_consumer_lag`: MeterflowConsumerLagGrowing
    fired on a worker pricing readings steadily and fully caught up)."""
    BORROWED.check_one("written_changelogs")

    def written(tp: Any) -> bool:
        recovery = app.tables.recovery  # read when asked: the app's tables come at start
        return not recovery.in_recovery and tp in recovery.active_tps

    return written


def _readable_end(consumer: Any, tp: Any) -> int | None:
    """Where reading `tp` ends: the last stable offset at `read_committed` (records of an open
    transaction are not readable yet), else the high-water mark."""
    aio = getattr(getattr(consumer, "_thread", None), "_consumer", None)
    if aio is not None and getattr(aio, "_isolation_level", None) == "read_committed":
        stable = aio.last_stable_offset(tp)
        if stable is not None and stable >= 0:
            return int(stable)
    end: int | None = consumer.highwater(tp)
    return end


@BORROWED.patch(
    Signature(Consumer, "ack", "(self, message)", reached_from=WorkerConsumer),
    Names(Message, "__init__", ("tracked",)),
)
def _install_ack_only_tracked() -> None:
    """Never mark a record safe-to-commit that no stream has processed.

    `Stream._py_aiter` skips a fetched record whose generation id is stale (fetched before a
    rebalance) or that arrives while the flow is suspended, and then *acks* it on the way out,
    so the next offset commit moves past a record nobody priced: the records "lost" around a
    SIGKILL restart and the first record of a fresh partition in a rebalance. A record that a
    stream really processed is always marked `tracked` first, so acking is limited to those;
    a skipped record stays unacked, the commit stops before it, and the seek to the committed
    offset that follows every rebalance fetches it again.
    """
    if getattr(Consumer, _PATCHED_ACK, False):
        return
    original: Callable[[Any, Any], bool] = Consumer.ack

    def ack_only_tracked(self: Any, message: Any) -> bool:
        if not message.tracked:
            return False
        return original(self, message)

    replace(Consumer, "ack", ack_only_tracked, original)
    setattr(Consumer, _PATCHED_ACK, True)


@BORROWED.patch(
    Signature(
        Consumer,
        "__init__",
        "(self, transport, callback, on_partitions_revoked, on_partitions_assigned, *, "
        "commit_interval=None, commit_livelock_soft_timeout=None, loop=None, **kwargs)",
    ),
    Names(Consumer, "__init__", ("_read_offset",)),
    # the fetch loop reads it through `__getitem__`, which `_NeverDropReadOffsets` overrides
    Names(Consumer, "_drain_messages", ("_read_offset", "__getitem__")),
)
def _install_never_drop() -> None:
    if getattr(Consumer, _PATCHED_READ, False):
        return
    original_init = Consumer.__init__

    def init_never_dropping(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        topics = frozenset(getattr(self.app, NO_DROP_TOPICS_ATTR, ()))
        if topics:
            self._read_offset = _NeverDropReadOffsets(topics)

    replace(Consumer, "__init__", init_never_dropping, original_init)
    setattr(Consumer, _PATCHED_READ, True)


@BORROWED.patch(
    Signature(AIOKafkaConsumerThread, "seek_to_committed", "async (self)"),
    Signature(AIOKafkaConsumerThread, "seek_to_beginning", "async (self, *partitions)"),
    also_written_for=_AIOKAFKA,  # aiokafka's seek_to_committed skips committed offsets of 0
)
def _install_rewind() -> None:
    """Rewind fresh input partitions after faust's seek to committed offsets.

    Seen in the two-worker test: records that arrive while a rebalance's table recovery runs are
    fetched, dropped by the suspended flow, and never fetched again when the partition has no
    committed offset yet: aiokafka's `seek_to_committed` only seeks when the committed offset is
    > 0, so the fetch position stays past them. After that seek, every source-topic partition
    without a committed offset (None or 0) is rewound to its beginning, which is what
    `auto_offset_reset="earliest"` means anyway. Changelog partitions are left to recovery.
    """
    if getattr(AIOKafkaConsumerThread, _PATCHED, False):
        return
    original: Callable[[Any], Awaitable[Mapping[Any, int | None]]] = (
        AIOKafkaConsumerThread.seek_to_committed
    )

    async def seek_to_committed(self: Any) -> Mapping[Any, int | None]:
        committed = await original(self)
        changelogs = set(self.app.tables.changelog_topics)
        rewind = [
            tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs
        ]
        if rewind:
            await self.seek_to_beginning(*rewind)
        return committed

    replace(AIOKafkaConsumerThread, "seek_to_committed", seek_to_committed, original)
    setattr(AIOKafkaConsumerThread, _PATCHED, True)


@BORROWED.patch(
    Signature(WorkerConsumer, "seek", "async (self, partition, offset)"),
    Signature(WorkerConsumer, "highwater", "(self, tp)"),
    Signature(aiokafka.AIOKafkaConsumer, "last_stable_offset", "(self, partition)"),
    Names(Consumer, "__init__", ("_acked", "_acked_index", "_unacked_messages")),
    Names(faust_consumer.ThreadDelegateConsumer, "__init__", ("_thread",)),
    Names(AIOKafkaConsumerThread, "on_start", ("_consumer",)),
    Signature(AIOKafkaConsumerThread, "call_thread", "async (self, fun, *args, **kwargs)"),
    Names(faust_consumer.ThreadDelegateConsumer, "_seek", ("_thread", "seek")),
    also_written_for=_AIOKAFKA,
)
class InputGapGuard:
    """Makes an input partition reach the agent in order, without holes.

    A record faust skips at a rebalance (stale generation, suspended flow) is gone from the
    stream, and when the assignment did not change no seek follows to fetch it again: the agent
    would go on past it, and the commit would stall before it for good. The guard knows the next
    offset each input partition owes the agent (the committed offset after a seek, then one past
    each record admitted). A record beyond it means a hole: the guard seeks the partition back
    to the missing offset and turns away records (unacked, so no commit passes them) until that
    one arrives. Records are admitted again from there, in order; one admitted twice is priced
    twice, with the same result id.

    Some offsets hold no record: a transactional producer's commit markers. When the record
    that revealed a hole comes again after the rewind, nothing came before it, so the hole was
    such empty offsets; they are marked done (log `input_gap_empty`) and the commit moves on.
    """

    def __init__(self, app: Any, *, stall_after_s: float = 5.0) -> None:
        self._app = app
        self._rewinding: dict[Any, tuple[int, int]] = {}  # tp -> (owed, offset that showed it)
        self._tail_rewinds: dict[Any, tuple[int, int]] = {}  # tp -> (owed, high-water mark)
        self._stall_after_s = stall_after_s
        self._busy = 0  # agents inside `handling` (one per guarded input topic)
        self._idle_since = time.monotonic()

    @contextmanager
    def handling(self) -> Iterator[None]:
        """Wrap the handling of one event, so that a busy agent is never taken for a stall."""
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1
            self._idle_since = time.monotonic()

    async def rewind_stalled(self) -> None:
        """Seek back a partition whose records stopped coming although the broker has more.

        A hole is seen when a later record arrives; a hole at the tail of a partition, with no
        record after it, is not. Run periodically: when the agent has waited for events for
        `stall_after_s` while an assigned input partition's high-water mark is past the next
        offset it owes the agent, that partition is sought back to it (log
        `input_stall_rewound`). A false alarm only fetches records again: same result ids. If
        the same rewind brought nothing the last time, the offsets up to the high-water mark
        hold no record (a transaction's commit marker ends the partition): they are marked done
        (log `input_gap_empty`).
        """
        app = self._app
        consumer = app.consumer
        if self._busy or app.rebalancing or not consumer.flow_active:
            return
        if time.monotonic() - self._idle_since < self._stall_after_s:
            return
        expected: dict[Any, int] = getattr(consumer, _NEXT_OFFSETS_ATTR, {})
        assigned = consumer.assignment()
        for tp, owed in list(expected.items()):
            if tp not in assigned:
                continue
            highwater = _readable_end(consumer, tp)
            if highwater is None or highwater <= owed:
                self._tail_rewinds.pop(tp, None)
                continue
            if self._tail_rewinds.get(tp) == (owed, highwater):
                self._tail_rewinds.pop(tp)
                _skip_empty(consumer, tp, owed, highwater)
                expected[tp] = highwater
                continue
            self._tail_rewinds[tp] = (owed, highwater)
            _log.warning(
                "input_stall_rewound",
                extra={
                    "fields": {
                        "event": "input_stall_rewound",
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "expected_offset": owed,
                        "highwater": highwater,
                    }
                },
            )
            await _seek_on_fetch_thread(consumer, tp, owed)
        self._idle_since = time.monotonic()

    async def admit(self, event: Any) -> bool:
        message = event.message
        tp, offset = message.tp, message.offset
        consumer = self._app.consumer
        expected: dict[Any, int] = getattr(consumer, _NEXT_OFFSETS_ATTR, {})
        owed = expected.get(tp)
        if owed is None or offset <= owed:
            expected[tp] = offset + 1
            self._rewinding.pop(tp, None)
            return True
        rewinding = self._rewinding.get(tp)
        if rewinding is not None and rewinding[0] == owed:
            if offset == rewinding[1]:
                # Fetched again from `owed` (each fetch makes a new message), and nothing came
                # before it: the offsets in between hold no record.
                _skip_empty(consumer, tp, owed, offset)
                expected[tp] = offset + 1
                del self._rewinding[tp]
                return True
            _turn_away(consumer, message)
            return False
        self._rewinding[tp] = (owed, offset)
        _log.warning(
            "input_gap_rewound",
            extra={
                "fields": {
                    "event": "input_gap_rewound",
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "expected_offset": owed,
                    "got_offset": offset,
                }
            },
        )
        _turn_away(consumer, message)
        await _seek_on_fetch_thread(consumer, tp, owed)
        return False

    def turn_away(self, events: Iterable[Any]) -> None:
        """Give back admitted events the agent did not process (a rebalance interrupted the
        batch): never acked, so no commit passes them, and owed again, so they are fetched
        again: by the seek that follows every assignment, or, should none follow, by the
        rewind that the next record of the partition (a hole) or a stall then triggers."""
        consumer = self._app.consumer
        expected: dict[Any, int] = getattr(consumer, _NEXT_OFFSETS_ATTR, {})
        for event in events:
            message = event.message
            _turn_away(consumer, message)
            owed = expected.get(message.tp)
            if owed is not None and message.offset < owed:
                expected[message.tp] = message.offset


@BORROWED.patch(
    Signature(faust_streams, "current_event", "()"),
    Names(faust_streams, "current_event", ("_current_event", "get")),
    # what entering an event is for: RocksDB picks the partition's database from it
    Names(faust_rocksdb.Store, "_get", ("current_event", "message", "partition")),
    Names(faust_rocksdb.Store, "_set", ("current_event", "message", "partition")),
)
def enter_event(event: Any) -> None:
    """Make `event` faust's current event, as the stream does for each event it yields.

    A table write goes to the changelog partition of the current event (and, with RocksDB, to
    that partition's database; RocksDB's write asserts there is one), and a RocksDB read of a
    partitioned table looks in the current event's database only. `take_events` iterates the
    stream in a task of its own (the passive drainer), so the agent that walks the batch has no
    current event at all, or the one it made current last, possibly of another partition: an
    agent that reads or writes a table while it walks a batch makes each event current first
    (tests/integration/test_stream_rocksdb.py fails when the batch's last event is current)."""
    faust_streams._current_event.set(weakref.ref(event))


async def _seek_on_fetch_thread(consumer: Any, tp: Any, offset: int) -> None:
    """faust's `consumer.seek(tp, offset)`, run on the consumer's own thread.

    Called from the agent's loop, faust's seek reaches aiokafka's `seek`, which deletes the
    partition's entry of the fetcher's `_records` while the consumer thread may be iterating
    them in `fetched_records`: seen once as a `KeyError` there, which stopped the worker (a
    stall rewind right after SIGSTOP/SIGCONT; docs/stream.md, "a seek racing the fetcher")."""
    thread = consumer._thread
    await thread.call_thread(consumer.seek, tp, offset)


def _turn_away(consumer: Any, message: Any) -> None:
    """Keep faust from acking a record the agent did not process (it would let a commit pass
    it): an event is acked after its batch (`take_batches`) or when the next one is asked for
    (faust's stream), unless it is marked acked."""
    message.acked = True
    consumer._unacked_messages.discard(message)


def _skip_empty(consumer: Any, tp: Any, start: int, end: int) -> None:
    """Mark offsets [start, end) that hold no record as done, so commits can pass them."""
    _log.info(
        "input_gap_empty",
        extra={
            "fields": {
                "event": "input_gap_empty",
                "topic": tp.topic,
                "partition": tp.partition,
                "from_offset": start,
                "to_offset": end,
            }
        },
    )
    acked, index = consumer._acked[tp], consumer._acked_index[tp]
    for offset in range(start, end):
        if offset not in index:
            index.add(offset)
            acked.append(offset)


_PAUSED_FETCH_WAIT_S = 0.01
"""How long one fetch of the other partitions may wait while an input partition is paused."""


@BORROWED.patch(
    Signature(ThreadDelegateConsumer, "_getmany", "async (self, active_partitions, timeout)"),
    # a partition paused under pressure is in `_buffered_partitions` until its queue drains
    Names(Consumer, "on_buffer_full", ("_get_active_partitions", "_buffered_partitions")),
    Names(Consumer, "on_buffer_drop", ("_get_active_partitions", "_buffered_partitions")),
    # the fetch loop asks for the active partitions with a one-second wait
    Names(Consumer, "_drain_messages", ("getmany",)),
    Names(Consumer, "_wait_next_records", ("_get_active_partitions", "_getmany")),
)
def _install_prompt_resume() -> None:
    """Fetch a resumed partition at once, not after a second's wait on the others.

    A worker with a backlog fills its agent's queue, and faust pauses each input partition
    whose records meet a full queue (`stream.backpressure`) until the agent drains it
    (`on_buffer_drop`). The fetch loop meanwhile asks for the partitions still active (the
    profiles' `locations`, the changelogs), which are idle, and that fetch waits its full
    second: a partition resumed meanwhile is not asked for until it returns. Traced in a
    worker draining 100k records: the queue's first fill paused the six record partitions at
    1.07 s, they resumed at 1.21 s, and the fetch in flight returned at 2.08 s with nothing;
    every `bench_pipeline.py` drain stopped for 0.3-0.7 s after its first 15,500 outputs, and
    the worker trailed the Quix Streams peer. While a partition is paused, each fetch waits
    `_PAUSED_FETCH_WAIT_S` at most, so a resumed partition is fetched within that."""
    if getattr(ThreadDelegateConsumer, _PATCHED_RESUME, False):
        return
    original: Callable[[Any, Any, float], Awaitable[Any]] = ThreadDelegateConsumer._getmany

    async def getmany_resuming(self: Any, active_partitions: Any, timeout: float) -> Any:  # noqa: ASYNC109 - faust's signature
        if self._buffered_partitions:
            timeout = min(timeout, _PAUSED_FETCH_WAIT_S)
        return await original(self, active_partitions, timeout)

    replace(ThreadDelegateConsumer, "_getmany", getmany_resuming, original)
    setattr(ThreadDelegateConsumer, _PATCHED_RESUME, True)
