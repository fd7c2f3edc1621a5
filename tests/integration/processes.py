"""The integration tests' subprocesses (`meterflow api`/`worker`/`sink`, Prometheus): the
environment they start from, their log files, waiting for them to answer, stopping them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import aiohttp

MF = str(Path(sys.executable).with_name("meterflow"))


def service_env(variables: dict[str, str]) -> dict[str, str]:
    """This environment without any MF_… variable of the caller's, plus `variables`: a test's
    processes see exactly the settings the test gives them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MF_")}
    env.update(variables)
    return env


@dataclass
class Process:
    name: str
    proc: asyncio.subprocess.Process
    log_path: Path

    async def stop(self) -> None:
        """SIGTERM, so it shuts down as in production; SIGKILL after 20 s."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        return ""


def _open_log(log_dir: Path, name: str) -> tuple[Path, BinaryIO]:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    return log_path, log_path.open("ab")


async def spawn(
    name: str, argv: list[str], *, env: dict[str, str], cwd: Path, log_dir: Path
) -> Process:
    """Start `argv` with stdout and stderr in `<log_dir>/<name>.log`."""
    log_path, log = _open_log(log_dir, name)
    with log:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, cwd=cwd, stdout=log, stderr=asyncio.subprocess.STDOUT
        )
    return Process(name, proc, log_path)


async def wait_ready(
    process: Process, url: str, *, timeout_s: float, interval_s: float = 0.5
) -> None:
    """Poll `url` until it answers 200; fail with the log's tail when the process exits first
    or `timeout_s` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            if process.proc.returncode is not None:
                raise RuntimeError(
                    f"{process.name} exited ({process.proc.returncode}):\n{process.log_tail()}"
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    if response.status == 200:
                        return
            if loop.time() > deadline:
                raise RuntimeError(
                    f"{process.name} not ready at {url} after {timeout_s}s:\n{process.log_tail()}"
                )
            await asyncio.sleep(interval_s)
