"""Batches: folders, glob patterns, --skip-existing, --jobs."""
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audionmf.cli import main

from conftest import SAMPLE


@pytest.fixture
def album(tmp_path):
    """Four short songs in a folder (one in a subfolder) and a text file beside them."""
    mix, sr = sf.read(SAMPLE, frames=3 * 22050)
    folder = tmp_path / "album"
    (folder / "disc2").mkdir(parents=True)
    for i, path in enumerate([folder / "a.wav", folder / "b.flac", folder / "c.wav", folder / "disc2" / "d.wav"]):
        sf.write(path, np.roll(mix, 5000 * i), sr)
    (folder / "notes.txt").write_text("liner notes")
    return folder


def outputs(out):
    return sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)


def test_a_folder_means_the_audio_files_in_it(tmp_path, album):
    out = tmp_path / "out"
    assert main(["separate", str(album), "-o", str(out), "-q", "--iterations", "10"]) == 0
    assert outputs(out) == [f"{s}/source{i}.wav" for s in "abc" for i in (1, 2)]


def test_glob_patterns(tmp_path, album):
    out = tmp_path / "out"
    assert main(["separate", str(album / "**" / "*.wav"), "-o", str(out), "-q", "--iterations", "10"]) == 0
    assert outputs(out) == [f"{s}/source{i}.wav" for s in "acd" for i in (1, 2)]


def test_a_pattern_that_matches_nothing(tmp_path, capsys):
    assert main(["separate", str(tmp_path / "*.wav"), "-o", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "*.wav: no such file" in err[0]


def test_skip_existing_resumes(tmp_path, album, capsys):
    out = tmp_path / "out"
    assert main(["separate", str(album / "a.wav"), "-o", str(out), "-q", "--iterations", "10"]) == 0
    first = (out / "a" / "source1.wav").stat().st_mtime_ns
    (out / "b").mkdir()
    (out / "b" / "source1.wav").write_bytes(b"partial set: not skipped")
    assert main(["separate", str(album), "-o", str(out), "--skip-existing", "--iterations", "10"]) == 0
    err = capsys.readouterr().err
    assert "1 of 3 inputs already separated, skipped" in err
    assert (out / "a" / "source1.wav").stat().st_mtime_ns == first
    assert outputs(out) == [f"{s}/source{i}.wav" for s in "abc" for i in (1, 2)]
    sf.read(out / "b" / "source1.wav")  # redone: a real audio file now


def test_jobs_give_the_same_files_and_report_bad_ones(tmp_path, album):
    (album / "broken.wav").write_bytes(b"RIFF broken")
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["-m", "audionmf", "separate", str(album), "--iterations", "20"]
    first = subprocess.run([sys.executable, *args, "-o", str(one), "--jobs", "1"],
                           capture_output=True, text=True, timeout=300)
    second = subprocess.run([sys.executable, *args, "-o", str(two), "--jobs", "2"],
                            capture_output=True, text=True, timeout=300)
    for proc in (first, second):
        assert proc.returncode == 1
        assert "broken.wav: not a readable audio file" in proc.stderr
        assert "1 of 4 inputs failed: " in proc.stderr and "Traceback" not in proc.stderr
    assert outputs(one) == outputs(two) == [f"{s}/source{i}.wav" for s in "abc" for i in (1, 2)]
    for name in outputs(one):  # same seed, same result, in parallel too (BLAS round-off apart)
        np.testing.assert_allclose(sf.read(one / name)[0], sf.read(two / name)[0], atol=1e-6)
