"""numba and scipy loaded on first use (audionmf._lazy): signals held back meanwhile,
and short runs that never load them."""
import os
import signal
import subprocess
import sys
import threading

import pytest

from audionmf import _lazy
from conftest import ROOT, SAMPLE


@pytest.fixture
def usr1():
    """SIGUSR1 with a handler that counts, restored after the test."""
    calls = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: calls.append(signum))
    yield calls
    signal.signal(signal.SIGUSR1, previous)


def test_a_signal_inside_is_handled_on_leaving_by_the_handler_that_was_there(usr1):
    handler = signal.getsignal(signal.SIGUSR1)
    with _lazy.signals_held((signal.SIGUSR1,)):
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR1)
        for _ in range(1000):  # bytecode enough for a pending handler to run, were it not held
            pass
        assert usr1 == []
        assert signal.getsignal(signal.SIGUSR1) is not handler
    for _ in range(1000):
        pass
    assert usr1 == [signal.SIGUSR1]  # once: two of the same signal are one, as the kernel's are
    assert signal.getsignal(signal.SIGUSR1) is handler


def test_an_interrupt_inside_is_raised_after_the_block_not_in_it():
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with _lazy.signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
            finished.append(True)
        for _ in range(1000):
            pass
    assert finished == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_every_signal_held_reaches_its_handler_even_after_one_raised(usr1):
    """Ctrl-C and another signal inside: the interrupt is raised after the block, and the
    other signal's handler still ran (the command's SIGTERM handler sets its status so)."""
    with pytest.raises(KeyboardInterrupt):
        with _lazy.signals_held((signal.SIGINT, signal.SIGUSR1)):
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGUSR1)
            for _ in range(1000):
                pass
    assert usr1 == [signal.SIGUSR1]


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        with _lazy.signals_held((signal.SIGUSR2,)):
            os.kill(os.getpid(), signal.SIGUSR2)
        assert signal.getsignal(signal.SIGUSR2) is signal.SIG_IGN  # and the process is still here
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_an_error_inside_still_restores_the_handlers(usr1):
    handler = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(ZeroDivisionError):
        with _lazy.signals_held((signal.SIGUSR1,)):
            1 / 0
    assert signal.getsignal(signal.SIGUSR1) is handler


def test_another_thread_leaves_the_handlers_alone(usr1):
    handler, seen = signal.getsignal(signal.SIGUSR1), []

    def inside():
        with _lazy.signals_held((signal.SIGUSR1,)):
            seen.append(signal.getsignal(signal.SIGUSR1))

    worker = threading.Thread(target=inside)
    worker.start()
    worker.join()
    assert seen == [handler]


def test_kernels_are_numbas():
    assert _lazy.kernels().__name__ == "audionmf._kernels"
    assert _lazy.kernels() is sys.modules["audionmf._kernels"]


@pytest.mark.parametrize("mode", [[], ["--two-stems", "drums"]])
def test_a_short_file_is_separated_without_loading_numba(tmp_path, mode):
    """Its KL fits run on the numpy twins, so the command never pays numba's import."""
    script = ("import sys\nfrom audionmf.cli import main\n"
              f"status = main(['separate', {str(SAMPLE)!r}, '-o', {str(tmp_path)!r}] + {mode!r})\n"
              "print(status, 'numba' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.stdout.split() == ["0", "False"], done.stderr
    assert len(list(tmp_path.rglob("*.wav"))) >= 2


def test_module_is_imported_once_with_the_signals_held(monkeypatch):
    """The first call imports under held signals (Python's SIGINT handler swapped out);
    later calls return the loaded module without touching the handlers."""
    import importlib

    seen = []

    def import_module(name):
        seen.append((name, signal.getsignal(signal.SIGINT)))
        return importlib.__import__("json")

    monkeypatch.setattr(_lazy.importlib, "import_module", import_module)
    monkeypatch.delitem(sys.modules, "not_yet.loaded", raising=False)
    before = signal.getsignal(signal.SIGINT)
    assert _lazy.module("not_yet.loaded").__name__ == "json"
    assert [name for name, _ in seen] == ["not_yet.loaded"]
    assert seen[0][1] is not before  # held: the handler that notes it
    assert signal.getsignal(signal.SIGINT) is before
    assert _lazy.module("json") is sys.modules["json"]
    assert len(seen) == 1  # (already loaded: not imported again)


def test_a_short_file_with_source_models_loads_neither_numba_nor_scipy(tmp_path):
    """A 10 s separation with two models: numpy's transforms (a short signal's frames,
    spectrogram.SMALL_FFT_FRAMES) and the numpy twins of the KL kernels."""
    import numpy as np

    from audionmf import SourceModel, load

    y, sr = load(SAMPLE)
    half = y.size // 2
    paths = []
    for name, part in (("first", y[:half]), ("second", y[half:])):
        paths.append(str(tmp_path / f"{name}.npz"))
        SourceModel.learn([np.ascontiguousarray(part)], sr, name=name, n_components=6, max_iter=20,
                          random_state=0).save(paths[-1])
    out = tmp_path / "out"
    script = ("import sys\nfrom audionmf.cli import main\n"
              f"status = main(['separate', {str(SAMPLE)!r}, '-o', {str(out)!r}, '--model', {paths[0]!r}, "
              f"'--model', {paths[1]!r}])\n"
              "print(status, 'numba' in sys.modules, any(m.startswith('scipy') for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.stdout.split() == ["0", "False", "False"], done.stderr
    assert sorted(p.name for p in out.rglob("*.wav")) == ["first.wav", "second.wav"]


def test_a_module_another_thread_is_importing_is_waited_for(tmp_path, monkeypatch):
    """A module is in sys.modules before its import ends: a second thread that asks
    for it meanwhile gets it whole, not half-made."""
    import time

    (tmp_path / "slow_to_import_xyz.py").write_text("import time\ntime.sleep(0.3)\nVALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slow_to_import_xyz", raising=False)
    got = []

    def later():
        deadline = time.monotonic() + 10
        while "slow_to_import_xyz" not in sys.modules and time.monotonic() < deadline:
            time.sleep(0.001)
        try:
            got.append(_lazy.module("slow_to_import_xyz").VALUE)
        except AttributeError as exc:
            got.append(exc)

    waiting = threading.Thread(target=later)
    waiting.start()
    first = threading.Thread(target=_lazy.module, args=("slow_to_import_xyz",))
    first.start()
    first.join()
    waiting.join()
    assert got == [1]
