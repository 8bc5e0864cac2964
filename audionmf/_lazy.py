"""numba and scipy's modules, loaded when first needed, with Ctrl-C and SIGTERM held back meanwhile: private.

Importing numba takes 0.2-0.3 s, which a short file's whole separation can cost
again; the small Kullback-Leibler fits run on numpy twins of the kernels and need
none of it (:data:`audionmf._engine.SMALL_KL_ENTRIES`). So numba loads on first
use, in the middle of a run, where a Ctrl-C or a SIGTERM could land inside its
import and leave numba half-made for whatever comes next (a batch worker goes on
to its next file). The import therefore runs with SIGINT's and SIGTERM's handlers
replaced by ones that only note the signal, which is delivered again, to the
handler that was there, once the import has ended. scipy's modules (0.03-0.15 s each,
which a short file's separation with source models never needs) load the same way
(:func:`module`).
"""
import contextlib
import importlib
import signal
import sys
import threading

__all__ = ["kernels", "module", "signals_held"]


#: Held by the thread that imports a module through :func:`module`: another thread that
#: asks for one meanwhile waits for the import to end (scipy's own first imports are not
#: safe from two threads at once).
_IMPORTING = threading.RLock()


def kernels():
    """:mod:`audionmf._kernels`, numba's, imported on the first call."""
    return module(f"{__package__}._kernels")


def module(name):
    """The module ``name`` (``"scipy.fft"``), imported on the first call with the
    signals held back (:func:`signals_held`). A module that another thread is still
    importing (already in ``sys.modules``, not yet whole) is waited for."""
    loaded = sys.modules.get(name)
    if loaded is None or getattr(getattr(loaded, "__spec__", None), "_initializing", False):
        with _IMPORTING, signals_held():  # (once loaded: no lock taken, no handlers swapped)
            loaded = importlib.import_module(name)
    return loaded


@contextlib.contextmanager
def signals_held(signums=(signal.SIGINT, signal.SIGTERM)):
    """Hold ``signums`` back inside: each that arrives is raised again on leaving.

    Only the main thread runs Python's signal handlers and may change them; in any
    other thread this does nothing (an interrupt is then raised in the main thread,
    not inside this thread's block). A handler Python did not install (None) is
    left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived = []

    def note(signum, frame):
        arrived.append(signum)

    previous = {}
    try:
        for signum in signums:
            handler = signal.getsignal(signum)
            if handler is not None:
                previous[signum] = signal.signal(signum, note)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        raised = None
        for signum in dict.fromkeys(arrived):  # each to its own handler, even after one raised
            try:
                signal.raise_signal(signum)
            except BaseException as exc:  # (a KeyboardInterrupt from Python's, say)
                raised = raised or exc
        if raised is not None:
            raise raised
