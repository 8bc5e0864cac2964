"""Whatever users throw at it: the CLI as a subprocess over a matrix of inputs, property
tests of the NMF core, interrupts."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audionmf import ParameterError, nmf

from conftest import SAMPLE


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "audionmf", *map(str, args)],
                          capture_output=True, text=True, timeout=300, **kwargs)


def music(seconds, sr, channels=1, level=0.3, seed=0):
    """Tones and noise bursts: something worth separating at any rate and channel count."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tone = np.sin(2 * np.pi * 330 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    bursts = rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0.9)
    y = np.stack([np.roll(0.6 * tone + 0.2 * bursts, 37 * c) for c in range(channels)])
    return level * y / np.abs(y).max()


# Inputs that must work: finite stems that sum to the input, same rate and channel count.
WORKING = {
    "8 channels": dict(sr=22050, channels=8),
    "192 kHz": dict(sr=192000, channels=1, seconds=1.0),
    "8 kHz stereo": dict(sr=8000, channels=2),
    "extremely quiet (-140 dBFS)": dict(sr=22050, channels=1, level=1e-7),
    "extremely loud (float, +60 dBFS)": dict(sr=22050, channels=2, level=1e3),
    "one frame and a bit": dict(sr=22050, channels=1, seconds=2100 / 22050),
}


@pytest.mark.parametrize("case", list(WORKING))
def test_inputs_that_work(tmp_path, case):
    spec = {"seconds": 2.0, "level": 0.3, **WORKING[case]}
    y = music(spec["seconds"], spec["sr"], spec["channels"], spec["level"])
    path = tmp_path / "in put.wav"
    sf.write(path, y.T, spec["sr"], subtype="FLOAT")
    before = path.read_bytes()
    proc = run_cli("separate", path, "-o", tmp_path / "out", "--iterations", "30")
    assert proc.returncode == 0, proc.stderr
    total = 0
    for name in ("source1", "source2"):
        s, sr = sf.read(tmp_path / "out" / "in put" / f"{name}.wav", always_2d=True)
        assert sr == spec["sr"] and s.shape == y.T.shape
        assert np.all(np.isfinite(s))
        total = total + s
    np.testing.assert_allclose(total, y.T, atol=1e-6 * max(1.0, spec["level"]), rtol=1e-6)
    assert path.read_bytes() == before


def _refused_inputs(folder):
    folder.mkdir()
    good = music(2.0, 22050)
    cases = {}
    cases["truncated flac"] = folder / "cut.flac"
    sf.write(cases["truncated flac"], good[0], 22050)
    cases["truncated flac"].write_bytes(cases["truncated flac"].read_bytes()[:300])
    cases["inf samples"] = folder / "inf.wav"
    bad = good[0].copy()
    bad[1000] = np.inf
    sf.write(cases["inf samples"], bad, 22050, subtype="FLOAT")
    cases["a folder"] = folder / "folder.wav"
    cases["a folder"].mkdir()
    cases["text file"] = folder / "notes.wav"
    cases["text file"].write_text("these are not samples\n")
    return cases


@pytest.mark.parametrize("case", ["truncated flac", "inf samples", "a folder", "text file"])
def test_inputs_that_are_refused(tmp_path, case):
    path = _refused_inputs(tmp_path / "in")[case]
    proc = run_cli("separate", path, "-o", tmp_path / "out")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def test_ctrl_c_during_a_batch(tmp_path):
    mix, sr = sf.read(SAMPLE)
    inputs = []
    for i in range(6):
        inputs.append(tmp_path / f"song{i}.wav")
        sf.write(inputs[-1], np.tile(mix, 2), sr)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "audionmf", "separate", *map(str, inputs), "-o", str(out)],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "song0" / "source2.wav").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    finished = [d for d in out.iterdir()]
    assert 1 <= len(finished) < 6
    for folder in finished:  # only complete sets, no temporary files
        assert sorted(p.name for p in folder.iterdir()) == ["source1.wav", "source2.wav"]
        assert f"song{folder.name[4:]}" in err


# ---------------------------------------------------------------- NMF properties
values = st.one_of(
    st.just(0.0),
    st.floats(1e-30, 1e30),
    st.sampled_from([1e-310, 5e-324, 1e-40, 1e-45]),  # subnormal in float64 / float32
)


@st.composite
def matrices(draw):
    n_rows, n_cols = draw(st.integers(1, 10)), draw(st.integers(1, 12))
    flat = draw(st.lists(values, min_size=n_rows * n_cols, max_size=n_rows * n_cols))
    V = np.array(flat).reshape(n_rows, n_cols)
    if draw(st.booleans()):
        V[draw(st.integers(0, n_rows - 1))] = 0.0  # an all-zero row
    if draw(st.booleans()):
        V[:, draw(st.integers(0, n_cols - 1))] = 0.0  # an all-zero column
    return V


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(V=matrices(), K=st.integers(1, 14), beta=st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**31))
def test_nmf_never_breaks(V, K, beta, dtype, seed):
    V = V.astype(dtype)
    if not np.any(V):
        with pytest.raises(ParameterError, match="all zeros"):
            nmf(V, K)
        return
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        res = nmf(V, K, beta=beta, init="random", max_iter=25, tol=0, check_every=1, random_state=seed)
    for X in (res.W, res.H):
        assert X.dtype == dtype and np.all(np.isfinite(X)) and X.min() >= 0
    assert np.all(np.isfinite(res.losses))
    # Never up, beyond the round-off of evaluating the loss in this dtype: relative to the
    # loss itself, and absolute at the scale of the problem (the loss at the start).
    slack = 1e-4 if dtype == np.float32 else 1e-9
    rounding = 10 * np.finfo(dtype).eps * res.losses[0]
    assert np.all(np.diff(res.losses) <= slack * np.abs(res.losses[:-1]) + rounding)


@pytest.mark.parametrize("case", ["pickled object", "zip bomb", "not a zip", "foreign npz"])
def test_crafted_model_files(tmp_path, case):
    import zipfile

    path = tmp_path / "model.npz"
    if case == "pickled object":
        np.savez(path, kind=np.array([{"evil": 1}], dtype=object))
    elif case == "zip bomb":  # a small file that would unpack to 300 MB
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("templates.npy", b"\0" * (300 * 1024**2))
    elif case == "not a zip":
        path.write_bytes(b"\x93NUMPY garbage")
    else:
        np.savez(path, templates=np.ones((1025, 4)))
    mix = tmp_path / "mix.wav"
    sf.write(mix, music(1.0, 22050)[0], 22050)
    proc = run_cli("separate", mix, "--model", path, "-o", tmp_path / "out")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs a file system nobody can write")
@pytest.mark.parametrize("command", ["separate", "learn", "decompose"])
def test_unwritable_output_is_refused_before_work(tmp_path, command):
    """/proc refuses new files even to root, whose permission bits say nothing."""
    args = {
        "separate": ["separate", SAMPLE, "-o", "/proc/audionmf-out"],
        "learn": ["learn", "x", SAMPLE, "-o", "/proc/audionmf-model.npz"],
        "decompose": ["decompose", SAMPLE, "-o", "/proc/audionmf-features.npz"],
    }[command]
    started = time.time()
    proc = run_cli(*args)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "/proc" in lines[0] and "not writable" in lines[0]
    assert time.time() - started < 30  # refused up front, not after the work


def test_killed_mid_write_leaves_no_half_file(tmp_path):
    """SIGKILL at any moment: every file under a final name is complete."""
    mix, sr = sf.read(SAMPLE)
    path = tmp_path / "long.wav"
    sf.write(path, np.tile(mix, 6), sr)  # 60 s
    out = tmp_path / "out"
    for delay in (0.5, 1.5, 3.0):
        proc = subprocess.Popen([sys.executable, "-m", "audionmf", "separate", str(path), "-o", str(out),
                                 "-q", "--iterations", "40"])
        time.sleep(delay)
        proc.kill()
        proc.wait()
        for final in (out / "long").glob("*.wav") if (out / "long").exists() else []:
            y, _ = sf.read(final)
            assert y.shape[0] == 6 * len(mix)
