"""Run work we cannot trust to finish (letter templates, PDF and DOCX) in a worker process with hard limits.

Why a process: the template sandbox bounds what a template may ask for, but some work runs in C
without ever coming back to Python (a huge power, a huge string, a layout engine), so no check
inside the web worker can stop it in time. The work runs instead in a child process forked from
a clean fork server (no threads, no database connections, modules preloaded: a child starts in
about 10 ms). The child gets an address-space limit (RLIMIT_AS: its size when it starts plus the
memory budget) and a CPU limit (RLIMIT_CPU), and the parent enforces a wall clock: when a job's
time is up, the child is killed.

One child runs a list of jobs, so a bulk action does not start a process per letter: each job has
its own time budget, and the list may also have a total one. Results come back one by one.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

try:
    import resource
except ImportError:  # not on Windows: the wall clock still holds there
    resource = None

#: Modules the fork server imports once, so each child starts without importing them again
#: ("__main__": the program's entry script, which a child would otherwise import afresh).
PRELOAD = ["__main__", "engage.letters.warm", "engage.letters.rendering", "engage.letters.documents", "docx"]

MB = 1024 * 1024

_context_lock = threading.Lock()
_context = None


@dataclass(frozen=True)
class Budget:
    """Limits for one run: seconds per job, memory for the child, and optionally seconds in all."""

    seconds: float
    memory_mb: int
    total_seconds: float | None = None


class OverBudget(Exception):
    """A job that did not finish within its budget; `index` is the job, `reason` says which limit.

    reason: "time" (the job's seconds), "total_time" (the run's seconds in all), "memory",
    "error" (the job raised; `detail` has the exception) or "crashed" (the child died).
    """

    def __init__(self, index: int, reason: str, detail: str = ""):
        super().__init__(f"job {index}: {reason}{': ' + detail if detail else ''}")
        self.index = index
        self.reason = reason
        self.detail = detail


#: Seconds a child may take to start (the fork server's first start included) before it counts as crashed.
START_SECONDS = 60


def context():
    """The fork-server context, with our modules preloaded (Linux, macOS); spawn elsewhere."""
    global _context
    with _context_lock:
        if _context is None:
            if "forkserver" in multiprocessing.get_all_start_methods():
                _context = multiprocessing.get_context("forkserver")
                _context.set_forkserver_preload(PRELOAD)
            else:
                _context = multiprocessing.get_context("spawn")
        return _context


def _address_space() -> int | None:
    """This process's current virtual size in bytes (Linux), to set the memory limit above it."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _limit_self(memory_mb: int, cpu_seconds: int) -> None:
    """Limit this (child) process; where a limit is not supported, the parent's wall clock still holds."""
    if resource is None:
        return
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    size = _address_space()
    if memory_mb and size is not None:  # Linux; elsewhere the virtual size says little about memory
        limit = size + memory_mb * MB
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ValueError, OSError):
            pass


def _child(conn, func: Callable, shared: Any, jobs: Sequence, memory_mb: int, cpu_seconds: int) -> None:
    """The worker: set the limits, run each job, send back ("ok"|"memory"|"error", index, value)."""
    _limit_self(memory_mb, cpu_seconds)
    conn.send(("ready", -1, None))  # the budget's clock starts here, not while the fork server starts
    for index, job in enumerate(jobs):
        try:
            message = ("ok", index, func(shared, job))
        except MemoryError:
            message = ("memory", index, "")
        except Exception as exc:  # reported to the parent, which decides what to tell the user
            message = ("error", index, f"{type(exc).__name__}: {exc}")
        try:
            conn.send(message)
        except MemoryError:
            conn.send(("memory", index, ""))
        del message
    conn.close()


def run(func: Callable, shared: Any, jobs: Sequence, budget: Budget) -> Iterator[tuple[int, Any]]:
    """Yield (index, func(shared, job)) for each job, computed in one limited child, in order.

    Raises OverBudget at the first job that runs out of time or memory, raises or kills the
    child; the child is then stopped and the remaining jobs are not run. Use it in a `with
    contextlib.closing(...)` or consume it fully, so an early exit stops the child at once.
    `func` must be a module-level function (it is sent to the child by reference).
    """
    jobs = list(jobs)
    if not jobs:
        return
    ctx = context()
    total = budget.total_seconds
    cpu = math.ceil(total if total is not None else budget.seconds * len(jobs)) + 1
    reader, writer = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(writer, func, shared, jobs, budget.memory_mb, cpu), daemon=True)
    try:
        process.start()
    except OSError as exc:  # no process could be started (process or memory limits of the host)
        reader.close()
        writer.close()
        raise OverBudget(0, "crashed", f"no worker process could be started: {exc}") from exc
    writer.close()
    try:
        # The first run of a process also starts the fork server, which imports PRELOAD (WeasyPrint:
        # seconds on a busy machine): that wait is not the template's, so the budget starts once the
        # child says it is ready; a child that never gets there is a crash, not a slow template.
        if not reader.poll(START_SECONDS):
            raise OverBudget(0, "crashed", f"the worker process did not start within {START_SECONDS} s")
        try:
            reader.recv()
        except (EOFError, OSError):
            process.join(5)
            raise OverBudget(0, *_why_it_died(process.exitcode)) from None
        started = time.monotonic()
        for index in range(len(jobs)):
            deadline, reason = time.monotonic() + budget.seconds, "time"
            if total is not None and started + total < deadline:
                deadline, reason = started + total, "total_time"
            if not reader.poll(max(0.0, deadline - time.monotonic())):
                raise OverBudget(index, reason)
            try:
                kind, _, value = reader.recv()
            except (EOFError, OSError):
                process.join(5)
                raise OverBudget(index, *_why_it_died(process.exitcode)) from None
            if kind == "memory":
                raise OverBudget(index, "memory")
            if kind == "error":
                raise OverBudget(index, "error", value)
            yield index, value
    finally:
        reader.close()
        if process.is_alive():
            process.kill()
        process.join(5)


def _why_it_died(exitcode: int | None) -> tuple[str, str]:
    if exitcode is not None and exitcode < 0:
        if -exitcode == signal.SIGXCPU:
            return "time", ""
        return "crashed", signal.Signals(-exitcode).name
    return "crashed", f"exit status {exitcode}"
