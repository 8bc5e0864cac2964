import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import audionmf
from audionmf.cli import main

from conftest import SAMPLE


def run_cli(*args, cwd=None):
    """The command as a user runs it: a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "audionmf", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def files_under(folder):
    return sorted(
        os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs
    )


def test_separates_the_bundled_sample_as_a_subprocess(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("separate", SAMPLE, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert files_under(out) == ["drums_organ_bass/source1.wav", "drums_organ_bass/source2.wav"]
    mix, sr = sf.read(SAMPLE)
    total = 0
    for name in ("source1", "source2"):
        y, source_sr = sf.read(out / "drums_organ_bass" / f"{name}.wav")
        assert source_sr == sr and y.shape == mix.shape
        total = total + y
    assert np.max(np.abs(total - mix)) < 1e-4


def test_in_process_stereo_flac_output(tmp_path):
    mix, sr = sf.read(SAMPLE, frames=3 * 22050)
    stereo = tmp_path / "stereo in.wav"  # a space in the name
    sf.write(stereo, np.stack([mix, 0.8 * mix], axis=1), sr, subtype="PCM_16")
    out = tmp_path / "res"
    code = main(["separate", str(stereo), "-o", str(out), "--sources", "3", "--components", "9",
                 "--iterations", "30", "--format", "flac", "--quiet"])
    assert code == 0
    assert files_under(out) == [f"stereo in/source{i}.flac" for i in (1, 2, 3)]
    original, _ = sf.read(stereo)
    parts = [sf.read(out / "stereo in" / f"source{i}.flac")[0] for i in (1, 2, 3)]
    assert all(p.shape == original.shape for p in parts)
    assert np.max(np.abs(sum(parts) - original)) < 1e-5  # 24-bit FLAC


def test_options_reach_the_separation(tmp_path, monkeypatch):
    seen = {}

    def fake_separate_file(path, folder, **kwargs):
        seen.update(kwargs)
        return {"source1": os.path.join(folder, "source1.wav")}

    monkeypatch.setattr(sys.modules["audionmf.cli.separate"], "separate_file", fake_separate_file)
    code = main(["separate", str(SAMPLE), "-o", str(tmp_path), "--sources", "3", "--components", "12",
                 "--beta", "is", "--iterations", "7", "--n-fft", "1024", "--hop", "128",
                 "--seed", "9", "--rhythm", "1.5", "-q"])
    assert code == 0
    assert seen["n_sources"] == 3 and seen["n_components"] == 12 and seen["beta"] == 0.0
    assert seen["max_iter"] == 7 and seen["n_fft"] == 1024 and seen["hop_length"] == 128
    assert seen["random_state"] == 9 and seen["rhythm_weight"] == 1.5
    seen.clear()
    assert main(["separate", str(SAMPLE), "-o", str(tmp_path), "-q"]) == 0
    assert seen["rhythm_weight"] is None  # chosen from the mixture, as in Python


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert audionmf.__version__ in capsys.readouterr().out
    assert main(["separate", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--sources" in text and "examples:" in text and "exit status" in text


def test_help_imports_neither_scipy_nor_numba():
    """``audionmf --help`` stays fast: the heavy modules come with the first transform or fit."""
    import subprocess

    code = ("import sys\nfrom audionmf.cli import main\ntry:\n    main(['separate', '--help'])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in ('scipy', 'numba', 'librosa') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def make_bad_inputs(folder):
    """name -> (path, text the error must contain)."""
    folder.mkdir()
    cases = {"missing": (folder / "missing.wav", "no such file")}
    junk = folder / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file" * 20)
    cases["not audio"] = (junk, "not a readable audio file")
    empty = folder / "empty.wav"
    sf.write(empty, np.zeros((0, 1)), 22050)
    cases["zero length"] = (empty, "holds no samples")
    silent = folder / "silent.wav"
    sf.write(silent, np.zeros(22050), 22050)
    cases["silent"] = (silent, "silent")
    short = folder / "short.wav"
    sf.write(short, 0.1 * np.ones(1000), 22050)
    cases["too short"] = (short, "too short: 1000 samples")
    nan = folder / "nan.wav"
    data = 0.1 * np.sin(np.arange(22050) / 5.0)
    data[100] = np.nan
    sf.write(nan, data, 22050, subtype="FLOAT")
    cases["nan samples"] = (nan, "NaN or Inf")
    return cases


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    return make_bad_inputs(tmp_path_factory.mktemp("bad") / "inputs")


@pytest.mark.parametrize(
    "case", ["missing", "not audio", "zero length", "silent", "too short", "nan samples"]
)
def test_bad_input_one_line_exit_1_nothing_written(tmp_path, bad_inputs, case):
    path, expected = bad_inputs[case]
    before = path.read_bytes() if path.exists() else None
    out = tmp_path / "new" / ".." / "out" / "deeper"  # makedirs would make new/ too
    proc = run_cli("separate", path, "-o", out)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and expected in lines[0]
    assert "Traceback" not in proc.stderr
    assert sorted(os.listdir(tmp_path)) == []  # not even the empty folders it made
    if before is not None:
        assert path.read_bytes() == before


def test_one_bad_input_does_not_stop_the_others(tmp_path, bad_inputs, capsys):
    good = tmp_path / "good.wav"
    mix, sr = sf.read(SAMPLE, frames=2 * 22050)
    sf.write(good, mix, sr)
    out = tmp_path / "out"
    code = main(["separate", str(bad_inputs["not audio"][0]), str(good), "-o", str(out), "-q",
                 "--iterations", "20"])
    assert code == 1
    assert files_under(out) == ["good/source1.wav", "good/source2.wav"]
    err = capsys.readouterr().err
    assert "junk.wav: not a readable audio file" in err and "1 of 2 inputs failed" in err


@pytest.mark.parametrize("layout", ["out is a file", "parent is a file"])
def test_unusable_output_folder_is_refused_before_work(tmp_path, layout):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    out = blocker if layout == "out is a file" else blocker / "sub"
    proc = run_cli("separate", SAMPLE, "-o", out)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0], proc.stderr
    assert blocker.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_input_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "source1").mkdir(parents=True)
    victim = out / "source1" / "source1.wav"
    mix, sr = sf.read(SAMPLE, frames=22050)
    sf.write(victim, mix, sr)
    before = victim.read_bytes()
    code = main(["separate", str(victim), "-o", str(out), "-q", "--iterations", "5"])
    assert code == 1
    assert "is an input file" in capsys.readouterr().err
    assert victim.read_bytes() == before
    assert files_under(out) == ["source1/source1.wav"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["separate", "x.wav", "--sources", "0"], "--sources: must be at least 1"),
        (["separate", "x.wav", "--beta", "hellinger"], "--beta: expected kl, is, euclidean"),
        (["separate", "x.wav", "--beta", "100"], "--beta: beta='100': must lie in [-10, 10]"),
        (["learn", "x", "x.wav", "-o", "m.npz", "--beta=-1e3"], "must lie in [-10, 10]"),
        (["separate", "x.wav", "--rhythm", "1e300"], "--rhythm: must be at most 1000"),
        (["separate", "x.wav", "-o", ""], "-o: an empty folder name"),
        (["separate", "x.wav", "--sources", "3", "--components", "2"], "fewer than --sources"),
        (["separate", "x.wav", "--n-fft", "256", "--hop", "512"], "larger than --n-fft"),
        (["separate", "x.wav", "--format", "mp3"], "--format"),
        (["separate", "x.wav", "--frobnicate"], "unrecognized arguments"),
        (["separate"], "required: INPUT"),
        (["split", "x.wav"], "invalid choice: 'split'"),
        (["separate", "a/mix.wav", "b/mix.wav"], "would both write"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, args, expected):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]


def test_usage_error_as_a_subprocess():
    proc = run_cli("separate", "x.wav", "--iterations", "-3")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_groups_from_the_command_line(tmp_path):
    import soundfile as sf

    out = tmp_path / "out"
    code = main(["separate", str(SAMPLE), "-o", str(out), "--components", "6", "--group", "0,2-3",
                 "--group", "1,4-5", "-q"])
    assert code == 0
    y, sr = audionmf.load(SAMPLE)
    expected = audionmf.separate(y, sr, groups=[[0, 2, 3], [1, 4, 5]], random_state=0)
    for name, signal in expected.items():
        written, _ = sf.read(out / SAMPLE.stem / f"{name}.wav", dtype="float32")
        np.testing.assert_allclose(written, signal, atol=1e-6)


@pytest.mark.parametrize("options, message", [
    (["--group", "0,1", "--group", "1,2"], r"--group: components \[1\] are in more than one group"),
    (["--group", "0,1", "--group", "2", "--components", "4"], r"--group: .*missing \[3\]"),
    (["--group", "0-1", "--group", "2", "--sources", "3"], "--sources 3 but --group gives 2 sources"),
    (["--group", "0,x"], "expected component numbers such as 0,3,5"),
    (["--group", "3-1"], "bad component range '3-1'"),
    (["--group", "0", "--group", "1", "--rhythm", "1"], "--rhythm cannot be used with --group"),
])
def test_bad_groups_are_usage_errors(capsys, options, message):
    code = main(["separate", str(SAMPLE), "-o", "unused"] + options)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


def test_progress_bar_starts_over_for_a_second_fit(monkeypatch):
    """A blind separation of sustained notes runs two fits: the second gets a bar of
    its own, from 0, instead of counting backwards on the first (closed) one."""
    import io

    import tqdm

    from audionmf.cli._common import progress as _progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    bars = []

    class Bar:
        def __init__(self, total, **options):
            self.total, self.n, self.closed = total, 0, False
            bars.append(self)

        def update(self, step):
            assert not self.closed and step >= 0
            self.n += step

        def close(self):
            self.closed = True

    monkeypatch.setattr("sys.stderr", Terminal())
    monkeypatch.setattr(tqdm, "tqdm", Bar)
    callback = _progress("mix", 5, quiet=False)
    for count in (1, 2, 3, 4, 5, 1, 2, 3):  # the second fit stops early
        callback(count, 0.5)
    assert [(bar.n, bar.closed) for bar in bars] == [(5, True), (3, False)]


def test_an_interrupt_caught_inside_exec_of_a_string_still_exits_130(tmp_path):
    """CPython remembers a KeyboardInterrupt raised in code exec() ran from a string
    (a namedtuple made while a module imports, as a Ctrl-C or SIGTERM may land there)
    as unhandled, and `python -m` then dies by SIGINT (-2) whatever status the command
    chose; the command clears that mark."""
    from conftest import ROOT

    (tmp_path / "interrupted_in_exec.py").write_text(
        "from audionmf import cli\n"
        "def interrupted(argv=None):\n"
        "    try:\n"
        "        exec('raise KeyboardInterrupt')\n"
        "    except KeyboardInterrupt:\n"
        "        return cli.EXIT_INTERRUPTED\n"
        "cli._main = interrupted\n"
        "cli.console()\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "interrupted_in_exec"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
