"""How many threads this process's own work may run at once.

The NMF engine's thread pool and the FFTs' workers both ask here, so that a
batch worker process, whose siblings run on the other cores, can say 1 for
both at once.
"""
import os

#: None: the cores this process may run on. A batch worker process sets 1 (where it
#: is pinned to one core, Linux, the count is 1 anyway; elsewhere it is not).
LIMIT = None


def available_cores():
    """:data:`LIMIT`, or the number of cores this process may run on."""
    if LIMIT:
        return LIMIT
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
