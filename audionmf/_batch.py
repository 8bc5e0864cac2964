"""Running one task over many files: here, in worker processes, or on a Dask cluster.

A task is a picklable callable ``task(path) -> (path, written, error)`` with an
``args`` namespace (the command line's options; ``quiet`` and ``out`` are
adjusted here). ``error`` is None or ``(message, traceback)``: a task reports
its failures instead of raising them, so one bad file never stops a batch.
Used by ``audionmf separate`` (:mod:`audionmf.cli`).
"""
# Why the pool's bookkeeping is done here, not by a library (measured, see
# docs/decisions.md, 2026-12-07). When a worker dies (SIGKILL, as the out-of-memory
# killer sends), concurrent.futures fails every future not done, the other worker's
# file and the files not started included, with one BrokenProcessPool that names no
# task (max_tasks_per_child changes nothing there); loky 3.6 does the same with
# TerminatedWorkerError, and ends the other workers with SIGKILL, which would leave
# their temporary files. So each worker marks the file it is on (``current``) and the
# rest go on in a new pool. Ctrl-C must stop the workers at once and cleanly:
# concurrent.futures' shutdown waits for the files in progress (terminate_workers()
# comes with Python 3.14), loky's kill_workers sends SIGKILL; hence the SIGTERM sent
# here. A pool's initializer runs after the worker's imports, where a Ctrl-C prints a
# traceback (hence _sigint_held), and concurrent.futures' idle workers outlive a
# parent killed outright (both still there 10 s after; hence _exit_with_parent).
import contextlib
import os
import sys
import threading

from . import _threads

#: In the main process: the flag of the batch running (for SIGTERM to set, whatever
#: SIGINT's handler), whether an interrupted batch is being left, and whether the
#: command was sent SIGTERM.
INTERRUPTS = {"flag": None, "leaving": False, "terminated": False}

#: State of a worker process (in the main process, in_worker stays False).
WORKER = {"in_worker": False, "busy": False, "stop": False, "cancelled": None, "slot": None,
          "current": None}


def stopping():
    """Whether this worker must start no other file: it was told to stop, or the
    batch was cancelled (before it started, when there was no process to tell)."""
    cancelled = WORKER["cancelled"]
    return WORKER["stop"] or bool(cancelled is not None and cancelled.value)


def run_local(task, paths, jobs, quiet):
    """Yield task results as files finish, in this process or in ``jobs`` processes.

    Worker processes ignore SIGINT: on Ctrl-C this process cancels what has not
    started and sends SIGTERM to the workers, which abandon their file (its
    temporary files removed) and start no other; further Ctrl-Cs are ignored
    from then on (the ``audionmf`` command until it has exited;
    :func:`audionmf.cli.main` until it returns). A worker whose interrupt lands where Python
    cannot raise it (a callback) finishes its file instead, committed whole, and
    the batch waits for it. (On Windows SIGTERM ends a worker at once, and the
    file it was writing may leave its temporary files behind.) A worker whose
    parent dies abandons its file the same way and exits. A worker that dies
    (killed, out of memory) fails the file it was on; the others go on in a new
    pool.
    """
    if jobs == 1 or len(paths) < 2:
        for path in paths:
            yield task(path)
        return
    import multiprocessing

    task.args.quiet = True  # one progress bar for the batch, not one per file
    context = multiprocessing.get_context("spawn")
    bar = _batch_progress(len(paths), quiet)
    interrupted = {"flag": False}  # not an Event: its lock is not safe in a signal handler
    # The flag outlives the pools: a second Ctrl-C while a pool shuts down (the
    # workers abandoning their files) must not interrupt that wait either.
    try:
        with _interrupt_flag(interrupted):
            while paths:  # a worker that dies takes down its pool: the rest go on in a new one
                if interrupted["flag"]:
                    raise KeyboardInterrupt
                paths = yield from _run_pool(task, paths, min(jobs, len(paths)), context, bar, interrupted)
    finally:
        if bar is not None:
            bar.close()


def _run_pool(task, paths, n_workers, context, bar, interrupted):
    """Yield the results of ``paths`` from a pool of ``n_workers`` processes.

    Returns the paths left to run in a new pool: where a worker died (killed, out
    of memory), the pool is broken and every file not done fails with it, so the
    file that worker was on is reported failed (and its temporary files removed:
    ``task.abandoned(path)``), and the others come back. Where no file can be
    blamed (a worker died between files), they all come back, unless the pool
    finished none (a worker that dies on starting): then they all fail.
    """
    import signal
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    pids = context.Array("i", n_workers)
    # Per worker: the index of its file, or -1. Without a lock, which a worker killed
    # while holding it would keep forever (one int per store; read once all have exited).
    current = context.Array("i", [-1] * n_workers, lock=False)
    cancelled = context.RawValue("b", 0)  # seen by workers that start after the Ctrl-C
    done, broken = set(), False
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=context,
                             initializer=_start_worker, initargs=(pids, current, cancelled)) as pool:
        # The workers start (all of them, on the first submits) without SIGINT: a
        # Ctrl-C while they import is the parent's alone.
        with _sigint_held():
            futures = {pool.submit(_tracked, task, index, path): index for index, path in enumerate(paths)}
        try:
            pending = set(futures)
            while pending:
                # Ctrl-C only sets the flag, checked here: an exception raised by the
                # signal handler itself could land in a callback and be swallowed.
                finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                if interrupted["flag"]:
                    raise KeyboardInterrupt
                for future in finished:
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    done.add(futures[future])
                    if bar is not None:
                        bar.update(1)
                    yield result
                    if interrupted["flag"]:
                        raise KeyboardInterrupt
        except BaseException:
            cancelled.value = 1
            for future in futures:
                future.cancel()
            for pid in pids[:]:
                if pid:
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except OSError:
                        pass
            raise
    if not broken:
        return []
    # The pool has shut down: the workers that lived left their files (unwinding
    # them, which clears their mark); the one that died still marks its own.
    unfinished = [index for index in range(len(paths)) if index not in done]
    blamed = [index for index in current[:] if index >= 0]
    message = "a worker process died (out of memory?) while this file was being separated"
    if not blamed and not done:  # no file to blame, and none done: this would go on forever
        blamed, message = unfinished, "not done: a worker process died"
    cleanup = getattr(task, "abandoned", None)
    for index in blamed:
        if cleanup is not None:
            cleanup(paths[index])
        if bar is not None:
            bar.update(1)
        yield paths[index], None, (f"{message}; nothing written", "")
    return [paths[index] for index in unfinished if index not in blamed]


def _tracked(task, index, path):
    """``task(path)`` in a worker, marked as this worker's file while it runs."""
    slot = WORKER["slot"]
    WORKER["current"][slot] = index
    try:
        return task(path)
    finally:
        WORKER["current"][slot] = -1


class ClusterError(Exception):
    """The cluster cannot be used (unreachable scheduler, no workers)."""


def run_on_cluster(task, paths, address, quiet):
    """Yield task results as files finish on the workers of a Dask cluster.

    Every path goes over as an absolute one, so the workers need the same file
    system (a shared disk, or the workers on this machine). On Ctrl-C the files
    not yet started are cancelled; those a worker has begun run to the end (Dask
    does not interrupt a running task), each still writing all its outputs or none.
    """
    from distributed import Client, as_completed

    task.args.quiet = True
    task.args.out = os.path.abspath(task.args.out)
    if not paths:
        return
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError, TypeError) as exc:  # unreachable, or no address
        raise ClusterError(f"cannot reach the Dask scheduler at {address} ({exc})") from None
    bar = _batch_progress(len(paths), quiet)
    with client:
        futures = {client.submit(task, os.path.abspath(path), pure=False, key=_task_key(index, path)): path
                   for index, path in enumerate(paths)}
        try:
            for future in as_completed(futures):
                if bar is not None:
                    bar.update(1)
                path = futures[future]
                try:
                    sent, written, error = future.result()
                except Exception as exc:  # the worker died, or could not run the task
                    written, error = None, (f"failed on the cluster ({type(exc).__name__}: {exc}); "
                                            "nothing written", "")
                else:
                    if error is not None:  # name the file as the user did
                        error = (error[0].replace(sent, path, 1), error[1])
                yield path, written, error
        except BaseException:
            client.cancel(list(futures))
            raise
        finally:
            if bar is not None:
                bar.close()


def _task_key(index, path):
    """The Dask key of a file's task: text the scheduler can encode, whatever bytes the
    file's name holds (a name that is not UTF-8 arrives with surrogates, which
    msgpack refuses)."""
    name = os.fsencode(os.path.basename(path)).decode("utf-8", "backslashreplace")
    return f"audionmf-separate-{index}-{name}"


@contextlib.contextmanager
def _interrupt_flag(state):
    """SIGINT sets ``state["flag"]`` instead of raising KeyboardInterrupt, in the main
    thread (elsewhere, or where SIGINT is not Python's, nothing changes).

    Left by a KeyboardInterrupt, SIGINT stays ignored: the batch is over, but a
    further Ctrl-C must not break its summary with a traceback (nor, for the
    command, the exit). :func:`audionmf.cli.main` gives back the handler it found.
    """
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    INTERRUPTS["flag"], INTERRUPTS["leaving"] = state, False
    try:
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            yield
        else:
            yield from _flag_sigint(state)
    except KeyboardInterrupt:
        INTERRUPTS["leaving"] = True
        raise
    finally:
        INTERRUPTS["flag"] = None


def _flag_sigint(state):
    import signal

    def handler(signum, frame):
        state["flag"] = True  # no lock, no allocation: safe when it interrupts itself

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise
    except BaseException:
        signal.signal(signal.SIGINT, previous)
        raise
    else:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _sigint_held():
    """SIGINT held back while worker processes start, so that they start without it.

    On POSIX the signal is blocked in this thread (which starts the processes): a
    Ctrl-C in the meantime waits and reaches this process when the block ends,
    and the new processes inherit the blocked signal and never see it. Elsewhere
    (Windows) nothing is inherited: SIGINT is only ignored here meanwhile, from
    the main thread, and a worker that is still importing when a Ctrl-C comes
    can print a traceback of its own.
    """
    import signal

    if hasattr(signal, "pthread_sigmask"):
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    elif threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
    else:
        yield


def _start_worker(pids, current, cancelled):
    """Set up a worker process: its own core, one BLAS thread, one NMF and FFT thread
    (workers must not fight over the cores: OpenBLAS threads spin while they
    wait), SIGINT left to the parent, SIGTERM to abandon the file in progress,
    and an end when the parent ends."""
    import signal

    from threadpoolctl import threadpool_limits


    WORKER["in_worker"] = True
    WORKER["cancelled"] = cancelled
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_terminate)
    sys.unraisablehook = _quiet_about_termination
    threading.Thread(target=_exit_with_parent, name="audionmf-parent-watch", daemon=True).start()
    threadpool_limits(limits=1)  # for the life of this worker process
    _threads.limit_cores(1)  # the NMF engine's threads and the FFTs' (a no-op where pinned below)
    with pids.get_lock():
        index = next(i for i, pid in enumerate(pids) if pid == 0)
        pids[index] = os.getpid()
    WORKER["slot"], WORKER["current"] = index, current
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[index % len(cpus)]})


def _exit_with_parent():
    """Wait for the parent process to end (killed, say, with no chance to stop the
    pool), then abandon the file in progress as on SIGTERM and exit: a worker would
    otherwise separate its file, then wait for work forever. The exit waits until
    the file is left (its temporary files removed), or, if the interrupt landed
    where it could not be raised, finished and committed whole."""
    import multiprocessing
    import signal
    import time
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return
    wait([parent.sentinel])
    os.kill(os.getpid(), signal.SIGTERM)  # handled in the main thread: _on_terminate
    time.sleep(0.1)  # time for the handler to run: no file starts after it has
    while WORKER["busy"]:
        time.sleep(0.02)
    os._exit(1)


def _quiet_about_termination(unraisable):
    """Once the worker is told to stop, errors that Python cannot raise are dropped
    without a traceback. A KeyboardInterrupt from _on_terminate that landed in a
    callback or a finalizer: the file in progress then finishes, and is committed
    whole, and the worker starts no other. Or the finalizer of an object whose
    construction that interrupt cut short (llvmlite's, while numba loads a kernel)."""
    if WORKER["stop"]:
        return
    sys.__unraisablehook__(unraisable)


#: Seconds a worker told to stop waits, once it has left its file, for its pool to let
#: it go, before it exits on its own.
LEAVE_AFTER = 3.0


def _on_terminate(signum, frame):
    first = not WORKER["stop"]
    WORKER["stop"] = True
    if first:
        threading.Thread(target=_leave_when_idle, name="audionmf-leave", daemon=True).start()
    if WORKER["busy"] and first:  # (a second SIGTERM must not cut the clean-up short)
        raise KeyboardInterrupt  # unwinds the file in progress, removing its temporary files
    # Idle: the files still queued come back "not started" at once, and the worker
    # leaves when the pool shuts down (a worker that exits here would break the pool,
    # and Python 3.11 then prints a traceback from its manager thread).


def _leave_when_idle():
    """Exit LEAVE_AFTER seconds after the file in progress is left, if the pool has not
    let this worker go by then and the stop was not the batch's own. A pool broken by
    a worker that died (killed, out of memory) stops the others, then waits for them
    to exit; one that died inside the queue's lock takes the lock with it, and the
    others would wait for it forever. A batch stopped by Ctrl-C lets its idle workers
    go once the busy ones have left their files, which may take longer."""
    import time

    while WORKER["busy"]:
        time.sleep(0.02)
    time.sleep(LEAVE_AFTER)
    cancelled = WORKER["cancelled"]
    if not (cancelled is not None and cancelled.value):
        os._exit(1)


def _batch_progress(total, quiet):
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="files", unit="file", file=sys.stderr)
