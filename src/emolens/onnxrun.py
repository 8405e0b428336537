"""ONNX Runtime sessions and runs under limits: every session emolens makes (emotion models, the face detector)
gets its options here, and every model call goes through :func:`run`.

A model file is input too: a graph can loop for ever (a ``Loop`` of 10^15 iterations) or ask for more memory than
the machine has (a 60000x60000 ``Expand``). A model that is not trusted (any model but the bundled ones, unless
``--trust-model``) is therefore loaded with

- ONNX Runtime's memory arena capped (:func:`session_options` with ``memory_mb``): an allocation past the cap fails
  with an error instead of taking the machine's memory. The cap is one arena shared by every such session of the
  process (ONNX Runtime registers it once);
- a deadline on every call (``timeout``): ONNX Runtime's ``terminate`` flag is raised when it passes, which it
  checks between nodes (a ``Loop`` checks it at each iteration);
- a first call on a probe input under that deadline (:func:`probe`), in a thread of its own that is abandoned if
  the graph does not stop (one node that runs long cannot be stopped half-way).

:func:`deadline` sets a time by which all the work of this thread must end (the server's ``--request-timeout``):
every call made inside the block is stopped when it passes, trusted model or not, and :func:`check_deadline` says
so between steps.
"""

from __future__ import annotations

import heapq
import itertools
import operator
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

MAX_THREADS = max(8, 4 * (os.cpu_count() or 1))
"""Most ONNX Runtime threads a session may be given (4 a core, at least 8): ``--threads 20000`` tried to start
20000 threads and hung."""

DEFAULT_MODEL_TIMEOUT = 30.0
"""Seconds a call of an untrusted model may take (``EMOLENS_MODEL_TIMEOUT``), plus :data:`SECONDS_PER_CROP` for each
crop in it (a calibration runs a thousand crops a call); the probe call gets this alone."""
SECONDS_PER_CROP = 1.0
"""What each crop of a call adds to its deadline: ten times what a crop of the bundled five-net ensemble took on a
2-core machine busy with training (0.1 s)."""


def _half_the_memory_mb() -> int:
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 8192
    return max(1024, min(8192, int(total / 2**21)))


DEFAULT_MODEL_MEMORY_MB = _half_the_memory_mb()
"""Megabytes ONNX Runtime's arena may hold for untrusted models, all together (``EMOLENS_MODEL_MEMORY_MB``): half
the machine's memory, at most 8192 (a 60000x60000 Expand asks for 14 GB)."""


class DeadlineExceeded(TimeoutError):
    """A model call or the work around it went past its deadline (the message says which)."""


def env_limit(name: str, default: float) -> float:
    """A positive number from the environment variable ``name`` (``default`` when unset); ValueError otherwise."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected a positive number") from None
    if not (value > 0 and value != float("inf")):
        raise ValueError(f"{name}={text!r}: expected a positive number")
    return value


def check_threads(threads: int | None) -> int | None:
    """``threads`` if it is ``None`` (ONNX Runtime's default) or 1 ... :data:`MAX_THREADS`; ValueError otherwise."""
    if threads is None:
        return None
    try:
        n = operator.index(threads)  # an int, or a numpy integer
    except TypeError:
        n = 0
    if isinstance(threads, bool) or not 1 <= n <= MAX_THREADS:
        raise ValueError(f"threads must be a whole number from 1 to {MAX_THREADS} (4 a CPU core), not {threads!r}")
    return n


_arena_lock = threading.Lock()
_arena_mb: int | None = None


def _capped_arena(memory_mb: int) -> int:
    """Register the process's capped CPU arena once (ONNX Runtime allows one); the cap it has."""
    global _arena_mb
    import onnxruntime as ort

    with _arena_lock:
        if _arena_mb is None:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            # max_mem, arena_extend_strategy 1 (grow by what is asked, not the next power of two), defaults
            ort.create_and_register_allocator(info, ort.OrtArenaCfg(int(memory_mb) * 2**20, 1, -1, -1))
            _arena_mb = int(memory_mb)
        return _arena_mb


def session_options(threads: int | None = None, *, memory_mb: int | None = None):
    """ONNX Runtime options of every emolens session: ``threads`` intra-op threads (``None`` = all cores; at most
    :data:`MAX_THREADS`), one inter-op thread, ONNX Runtime's own log lines off; with ``memory_mb``, the process's
    capped arena (see the module docstring)."""
    import onnxruntime as ort

    threads = check_threads(threads)
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 4  # emolens reports failures itself, in one line
    if memory_mb is not None:
        _capped_arena(memory_mb)
        opts.add_session_config_entry("session.use_env_allocators", "1")
    return opts


# ----------------------------------------------------------------------------- deadlines
class _Watchdog:
    """One daemon thread that raises the ``terminate`` flag of each watched run when its deadline passes."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Any]] = []
        self._done: set[int] = set()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, when: float, opts: Any) -> int:
        with self._cond:
            token = next(self._ids)
            heapq.heappush(self._heap, (when, token, opts))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="emolens-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
            return token

    def unwatch(self, token: int) -> None:
        with self._cond:
            self._done.add(token)

    def stop_all(self) -> None:
        """Raise the flag of every run being watched now."""
        with self._cond:
            for _, token, opts in self._heap:
                if token not in self._done:
                    opts.terminate = True

    def _loop(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] in self._done:
                    self._done.discard(heapq.heappop(self._heap)[1])
                if not self._heap:
                    self._cond.wait()
                    continue
                when, token, opts = self._heap[0]
                wait = when - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                opts.terminate = True


_watchdog = _Watchdog()
_local = threading.local()


@contextmanager
def deadline(seconds: float | None) -> Iterator[float | None]:
    """All the work of this thread inside the block must end within ``seconds`` (``None``: no deadline): model
    calls are stopped when it passes (:class:`DeadlineExceeded`); :func:`check_deadline` checks it between steps.
    An outer deadline that comes sooner still holds. Yields the deadline (a :func:`time.monotonic` time)."""
    previous = getattr(_local, "deadline", None)
    current = previous
    if seconds is not None:
        mine = (time.monotonic() + seconds, seconds)
        if previous is None or mine[0] < previous[0]:
            current = mine
    _local.deadline = current
    try:
        yield None if current is None else current[0]
    finally:
        _local.deadline = previous


def current_deadline() -> float | None:
    """The deadline set by :func:`deadline` in this thread (``None``: none)."""
    d = getattr(_local, "deadline", None)
    return None if d is None else d[0]


def check_deadline(what: str = "the work") -> None:
    """:class:`DeadlineExceeded` if this thread's :func:`deadline` has passed, or :func:`stop_all` was called."""
    d = getattr(_local, "deadline", None)
    if d is not None and _stopping.is_set():
        raise DeadlineExceeded(f"{what} was stopped: the program is shutting down")
    if d is not None and time.monotonic() >= d[0]:
        raise DeadlineExceeded(f"{what} took longer than its {d[1]:g} s")


_stopping = threading.Event()


def stop_all() -> None:
    """The program is ending (the server got SIGTERM): every model call under a deadline is stopped now, and every
    work under :func:`deadline` stops at its next :func:`check_deadline`."""
    _stopping.set()
    _watchdog.stop_all()


def run(session: Any, feeds: dict[str, Any], *, timeout: float | None = None, what: str = "the model") -> list:
    """``session.run(None, feeds)``, stopped at the sooner of ``timeout`` seconds from now and this thread's
    :func:`deadline` (:class:`DeadlineExceeded`). Without either it is a plain call."""
    import onnxruntime as ort

    now = time.monotonic()
    work = current_deadline()
    own = None if timeout is None else now + timeout
    when = min((t for t in (own, work) if t is not None), default=None)
    if when is None:
        return session.run(None, feeds)
    if when <= now or (work is not None and _stopping.is_set()):
        check_deadline()
    opts = ort.RunOptions()
    opts.log_severity_level = 4
    token = _watchdog.watch(when, opts)
    try:
        return session.run(None, feeds, opts)
    except Exception:
        if opts.terminate:
            check_deadline()  # the work's deadline, or the program is stopping
            raise DeadlineExceeded(f"{what} took longer than {timeout:g} s on one call and was stopped "
                                   "(EMOLENS_MODEL_TIMEOUT sets the limit; --trust-model lifts it)") from None
        raise
    finally:
        _watchdog.unwatch(token)


def probe(session: Any, feeds: dict[str, Any], *, timeout: float, what: str = "the model") -> list:
    """A first call of an untrusted model, in a daemon thread of its own, stopped after ``timeout`` seconds; if it
    does not stop (one node running long), it is abandoned. :class:`DeadlineExceeded` in both cases."""
    import onnxruntime as ort

    opts = ort.RunOptions()
    opts.log_severity_level = 4
    result: dict[str, Any] = {}

    def call() -> None:
        try:
            result["out"] = session.run(None, feeds, opts)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            result["error"] = e

    thread = threading.Thread(target=call, name="emolens-probe", daemon=True)
    thread.start()
    try:
        thread.join(timeout)
    finally:
        if thread.is_alive():
            opts.terminate = True
    if thread.is_alive():
        thread.join(2.0)
        how = "was stopped" if not thread.is_alive() else "could not be stopped and was left behind"
        raise DeadlineExceeded(f"{what}'s first call, on a blank probe input, took longer than {timeout:g} s and "
                               f"{how} (a model that loops or works for ever?)")
    if "error" in result:
        raise result["error"]
    return result["out"]
