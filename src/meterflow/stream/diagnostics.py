"""`kill -USR2 <pid of meterflow worker>`: log what a worker that stopped progressing waits on.

A stalled Faust worker shows two idle threads in py-spy; what matters is asyncio state: the
tasks of the main loop and of the consumer thread's loop, faust's flow control and active
partitions, and aiokafka's positions and prefetched records. Read-only and best effort: the
consumer thread's state is read without its lock, so a field can be a moment stale.
"""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def _tasks(title: str, loop: asyncio.AbstractEventLoop | None) -> str:
    out = io.StringIO()
    if loop is None:
        return f"== {title}: no loop\n"
    try:
        tasks = list(asyncio.all_tasks(loop))
    except RuntimeError as exc:  # the set changed while we read it (other thread)
        return f"== {title}: {exc!r}\n"
    out.write(f"== {title}: {len(tasks)} tasks\n")
    for task in tasks:
        out.write(f"-- {task.get_name()} {task.get_coro()!r}\n")
        for where in _await_chain(task.get_coro()):
            out.write(f"     {where}\n")
    return out.getvalue()


def _await_chain(coro: Any, limit: int = 25) -> list[str]:
    """Where a task waits, innermost last (`Task.get_stack` shows only the outer coroutine)."""
    chain: list[str] = []
    while coro is not None and len(chain) < limit:
        frame = next(
            (f for a in ("cr_frame", "ag_frame", "gi_frame") if (f := getattr(coro, a, None))),
            None,
        )
        if frame is None:  # a future, or a C-implemented awaitable
            chain.append(repr(coro)[:300])
            break
        chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = next(
            (w for a in ("cr_await", "ag_await", "gi_yieldfrom") if (w := getattr(coro, a, None))),
            None,
        )
    return chain


def _consumer_state(app: Any) -> str:
    consumer = app.consumer
    lines = [
        "== interpreter",
        f"loop debug={asyncio.get_event_loop().get_debug()} trace={sys.gettrace()!r}"
        f" profile={sys.getprofile()!r} switch_interval={sys.getswitchinterval()}"
        f" gc_threshold={gc.get_threshold()} gc_count={gc.get_count()}",
        "== faust consumer",
        f"flow_active={consumer.flow_active} can_resume_flow={consumer.can_resume_flow.is_set()}",
        f"app.flow_control.is_active={app.flow_control.is_active()}",
        f"rebalancing={app.rebalancing} in_recovery={app.in_recovery}"
        f" generation={app.consumer_generation_id}",
        f"active_partitions={sorted(map(str, consumer._active_partitions or ()))}",
        f"paused_partitions={sorted(map(str, consumer._paused_partitions))}",
        f"buffered_partitions={sorted(map(str, consumer._buffered_partitions))}",
        f"committed={ {str(k): v for k, v in consumer._committed_offset.items()} }",
        f"acked_head={ {str(k): sorted(v)[:5] for k, v in consumer._acked.items() if v} }",
        f"fetcher={app._fetcher.state} drainer={app._fetcher._drainer!r}",
    ]
    thread = getattr(consumer, "_thread", None)
    aio = getattr(thread, "_consumer", None)
    if aio is not None:
        subscription = aio._subscription.subscription
        assignment = subscription.assignment if subscription is not None else None
        if assignment is not None:
            for tp, state in sorted(assignment._tp_state.items()):
                lines.append(
                    f"aiokafka {tp.topic}/{tp.partition}: position={state._position}"
                    f" paused={state.paused} status={state._status}"
                    f" highwater={state.highwater}"
                )
        fetcher = aio._fetcher
        lines.append(
            f"aiokafka prefetched={ {f'{tp.topic}/{tp.partition}': len(getattr(r, '_records', []) or []) for tp, r in fetcher._records.items()} }"  # noqa: E501
        )
    for agent in app.agents.values():
        for actor in getattr(agent, "_actors", ()):
            queue = getattr(getattr(actor.stream, "channel", None), "queue", None)
            size = queue.qsize() if queue is not None else None
            lines.append(f"agent {agent.name} actor: stream queue size={size}")
    return "\n".join(lines) + "\n"


def dump(app: Any, loop: asyncio.AbstractEventLoop) -> str:
    parts = ["worker_diagnostics\n"]
    sections: tuple[Callable[[], str], ...] = (
        lambda: _consumer_state(app),
        lambda: _tasks("main loop", loop),
        lambda: _tasks(
            "consumer thread loop",
            getattr(getattr(app.consumer, "_thread", None), "thread_loop", None),
        ),
    )
    for part in sections:
        try:
            parts.append(part())
        except Exception as exc:  # diagnostics must never hurt the worker
            parts.append(f"(failed: {exc!r})\n")
    return "".join(parts)
