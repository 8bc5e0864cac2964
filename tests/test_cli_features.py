"""`audionmf decompose`, `audionmf plot`, `separate --plot`, and the examples."""
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audionmf import SourceModel
from audionmf.cli import main

from conftest import ROOT, SAMPLE

SR = 8000


@pytest.fixture
def short_clip(tmp_path):
    y, sr = sf.read(SAMPLE, frames=3 * 22050)
    path = tmp_path / "clip.wav"
    sf.write(path, y, sr)
    return path


def test_decompose_npz(tmp_path, short_clip):
    out = tmp_path / "f.npz"
    assert main(["decompose", str(short_clip), "-o", str(out), "--components", "6", "-q"]) == 0
    with np.load(out, allow_pickle=False) as data:
        assert data["templates"].shape == (1025, 6)
        assert data["activations"].shape == (6, data["times"].size)
        assert data["frequencies"][-1] == pytest.approx(11025)
        assert np.all(np.diff(data["times"]) > 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.wav", "f.npz"]


def test_decompose_csv_with_a_model(tmp_path, short_clip):
    y, sr = sf.read(short_clip)
    model = SourceModel.learn(y, sr, name="mix", n_components=5, max_iter=30, random_state=0, fits=1)
    model.save(tmp_path / "m.npz")
    out = tmp_path / "acts.csv"
    assert main(["decompose", str(short_clip), "-o", str(out), "--model", str(tmp_path / "m.npz"), "-q"]) == 0
    table = np.loadtxt(out, delimiter=",", skiprows=1)
    header = out.read_text().splitlines()[0]
    assert header == "time,c0,c1,c2,c3,c4"
    assert table.shape[1] == 6 and table[0, 0] == 0.0
    assert np.all(table[:, 1:] >= 0)


def test_plot_writes_a_figure(tmp_path, short_clip):
    out = tmp_path / "fig.png"
    assert main(["plot", str(short_clip), "-o", str(out), "--components", "4", "--iterations", "20", "-q"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_separate_plot(tmp_path, short_clip):
    out = tmp_path / "out"
    assert main(["separate", str(short_clip), "-o", str(out), "--plot", "--iterations", "20", "-q"]) == 0
    assert sorted(p.name for p in (out / "clip").iterdir()) == ["separation.png", "source1.wav", "source2.wav"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["decompose", "x.wav", "-o", "x.txt"], "must end in .npz or .csv"),
        (["plot", "x.wav", "-o", "x.jpg"], "must end in .png or .pdf or .svg"),
        (["decompose", "x.wav", "-o", "x.npz", "--model", "m.npz", "--components", "3"],
         "--components cannot be used with --model"),
        (["decompose", "x.wav"], "required: -o"),
    ],
)
def test_usage_errors(capsys, args, expected):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]


def test_bad_input_and_model(tmp_path, short_clip, capsys):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(SR), SR)
    for args, expected in [
        (["decompose", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "a.npz")], "missing.wav: no such file"),
        (["plot", str(silent), "-o", str(tmp_path / "a.png")], "silent.wav: the audio is silent"),
        (["decompose", str(short_clip), "-o", str(tmp_path / "a.npz"), "--model", str(silent)],
         "silent.wav: an audio file, not a model"),
        (["decompose", str(short_clip), "-o", str(tmp_path / "no" / "a.npz")], "a.npz: folder"),
    ]:
        assert main(args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.wav", "silent.wav"]


@pytest.mark.parametrize("script", ["plot_decomposition.py", "features_similarity.py", "supervised_separation.py"])
def test_examples_run_as_written(tmp_path, script):
    args = [sys.executable, str(ROOT / "examples" / script)]
    if script == "plot_decomposition.py":
        args.append(str(tmp_path / "fig.png"))
    proc = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    if script == "plot_decomposition.py":
        assert (tmp_path / "fig.png").stat().st_size > 10_000


def test_missing_input_with_an_existing_output(tmp_path, capsys):
    existing = tmp_path / "x.npz"
    existing.write_bytes(b"old")
    assert main(["decompose", str(tmp_path / "nothere.wav"), "-o", str(existing)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothere.wav: no such file" in err[0]
    assert existing.read_bytes() == b"old"


@pytest.mark.parametrize("command", ["separate", "learn", "decompose"])
def test_tiny_n_fft_is_a_usage_error(command, capsys):
    args = {"separate": ["separate", "x.wav"], "learn": ["learn", "x", "x.wav", "-o", "m.npz"],
            "decompose": ["decompose", "x.wav", "-o", "f.npz"]}[command]
    assert main(args + ["--n-fft", "2"]) == 2  # the default hop would be 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--n-fft 2: too small for the default hop" in err[0]
    assert "--hop 0" not in err[0]  # a hop nobody gave


def test_decompose_never_overwrites_its_model(tmp_path, short_clip, capsys):
    y, sr = sf.read(short_clip)
    model = tmp_path / "m.npz"
    SourceModel.learn(y, sr, name="mix", n_components=3, max_iter=10, context=0).save(model)
    before = model.read_bytes()
    assert main(["decompose", str(short_clip), "-o", str(model), "--model", str(model)]) == 1
    assert "is the input" in capsys.readouterr().err
    assert model.read_bytes() == before
