"""Running one task over many files: here, in worker processes, or on a Dask cluster.

A task is a picklable callable ``task(path) -> (path, written, error)`` with an
``args`` namespace (the command line's options; ``quiet`` and ``out`` are
adjusted here). ``error`` is None or ``(message, traceback)``: a task reports
its failures instead of raising them, so one bad file never stops a batch.
Used by ``audionmf separate`` (:mod:`audionmf.cli`).
"""
import os
import sys

from .cli import EXIT_INTERRUPTED

#: State of a worker process (in the main process, in_worker stays False).
WORKER = {"in_worker": False, "busy": False, "stop": False}


def run_local(task, paths, jobs, quiet):
    """Yield task results as files finish, in this process or in ``jobs`` processes.

    Worker processes ignore SIGINT: on Ctrl-C this process cancels what has not
    started and sends SIGTERM to the workers, which abandon their file (its
    temporary files removed) and start no other.
    """
    if jobs == 1 or len(paths) < 2:
        for path in paths:
            yield task(path)
        return
    import multiprocessing
    import signal
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    task.args.quiet = True  # one progress bar for the batch, not one per file
    context = multiprocessing.get_context("spawn")
    n_workers = min(jobs, len(paths))
    pids = context.Array("i", n_workers)
    bar = _batch_progress(len(paths), quiet)
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=context,
                             initializer=_start_worker, initargs=(pids,)) as pool:
        futures = {pool.submit(task, path): path for path in paths}
        try:
            for future in as_completed(futures):
                if bar is not None:
                    bar.update(1)
                try:
                    yield future.result()
                except BrokenProcessPool:
                    yield futures[future], None, ("a worker process died (out of memory?) before "
                                                  "this file was done; nothing written", "")
        except BaseException:
            for future in futures:
                future.cancel()
            for pid in pids[:]:
                if pid:
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except OSError:
                        pass
            raise
        finally:
            if bar is not None:
                bar.close()


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
        futures = {client.submit(task, os.path.abspath(path), pure=False,
                                 key=f"audionmf-separate-{index}-{os.path.basename(path)}"): path
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


def _start_worker(pids):
    """Set up a worker process: its own core and one BLAS thread (workers must not
    fight over the cores: OpenBLAS threads spin while they wait), SIGINT left to
    the parent, SIGTERM to abandon the file in progress."""
    import signal

    from threadpoolctl import threadpool_limits

    WORKER["in_worker"] = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_terminate)
    threadpool_limits(limits=1)  # for the life of this worker process
    with pids.get_lock():
        index = next(i for i, pid in enumerate(pids) if pid == 0)
        pids[index] = os.getpid()
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[index % len(cpus)]})


def _on_terminate(signum, frame):
    WORKER["stop"] = True
    if WORKER["busy"]:
        raise KeyboardInterrupt  # unwinds the file in progress, removing its temporary files
    os._exit(EXIT_INTERRUPTED)  # idle: nothing to clean up


def _batch_progress(total, quiet):
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="files", unit="file", file=sys.stderr)
