"""How many threads this process's own work may run, and the state the threads share.

The factorization's thread pools and the FFTs' workers both ask
:func:`available_cores`, so that a batch worker process, whose siblings run on
the other cores, can say 1 for both at once (:data:`LIMIT`). Fits run their
blocks on :func:`thread_pool`'s threads with BLAS held single-threaded by
:func:`serial_blas`; a forked child starts with none of that state.
"""
import contextlib
import os
import threading

__all__ = ["LIMIT", "available_cores", "limit_cores", "cores_limited", "thread_pool", "blas_controller",
           "serial_blas"]

#: None: the cores this process may run on. A batch worker process sets 1 (where it
#: is pinned to one core, Linux, the count is 1 anyway; elsewhere it is not).
LIMIT = None

_SHARED = {"pools": {}, "controller": None, "serial": 0, "limiter": None}
_SHARED_LOCK = threading.Lock()


def available_cores():
    """:data:`LIMIT`, or the number of cores this process may run on."""
    if LIMIT:
        return LIMIT
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def limit_cores(n):
    """From now on, run this process's own work on at most ``n`` cores (None: on all
    it may run on), as a batch worker process does."""
    global LIMIT
    LIMIT = n


@contextlib.contextmanager
def cores_limited(n):
    """At most ``n`` cores inside; the limit before is restored after."""
    before = LIMIT
    limit_cores(n)
    try:
        yield
    finally:
        limit_cores(before)


def thread_pool(n_threads):
    """A pool of ``n_threads`` worker threads, kept for the next fit that wants as many.

    Kept, because starting threads for every fit costs as much as an iteration
    (docs/decisions.md, "Thread pools and the BLAS controller kept"). Fits that
    run at the same time share it (their tasks queue up); a pool is never shut
    down while a fit may hold it.
    """
    with _SHARED_LOCK:
        pool = _SHARED["pools"].get(n_threads)
        if pool is None:
            from concurrent.futures import ThreadPoolExecutor

            pool = _SHARED["pools"][n_threads] = ThreadPoolExecutor(
                max_workers=n_threads, thread_name_prefix="audionmf-nmf")
        return pool


def blas_controller():
    """threadpoolctl's view of the loaded BLAS, found once per process.

    Kept, because a fresh look costs a noticeable share of a short fit
    (docs/decisions.md, "Thread pools and the BLAS controller kept").
    """
    with _SHARED_LOCK:
        if _SHARED["controller"] is None:
            from threadpoolctl import ThreadpoolController

            _SHARED["controller"] = ThreadpoolController()
        return _SHARED["controller"]


@contextlib.contextmanager
def serial_blas():
    """BLAS single-threaded inside, for all threads of the process.

    The fits run their own threads, each calling BLAS for one block, so BLAS
    must not start threads of its own. Concurrent users share one limit: the
    first in sets it and the last out restores what was there before. (With a
    limit each, one fit ending would give BLAS its threads back while another
    still runs, and the last to end would restore the limit of the one before:
    one thread, for good.) The limit is the process's: numpy in other threads
    runs single-threaded too while a fit runs.
    """
    controller = blas_controller()
    with _SHARED_LOCK:
        if _SHARED["serial"] == 0:
            _SHARED["limiter"] = controller.limit(limits=1, user_api="blas")
        _SHARED["serial"] += 1
    try:
        yield
    finally:
        with _SHARED_LOCK:
            _SHARED["serial"] -= 1
            if _SHARED["serial"] == 0:
                _SHARED["limiter"].restore_original_limits()
                _SHARED["limiter"] = None


def _forget_threads():
    """In a forked child the pools' threads do not exist: start afresh, with BLAS's
    own thread count back if the fork came while a fit had limited it."""
    limiter = _SHARED["limiter"]
    _SHARED["pools"] = {}
    _SHARED["serial"], _SHARED["limiter"] = 0, None
    if limiter is not None:
        try:
            limiter.restore_original_limits()
        except Exception:  # never fail a fork over a thread count
            pass
    global _SHARED_LOCK
    _SHARED_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads)
