"""The command line against what a new user throws at it: one bad file never ends a
batch, options are bounded before any work, and every refusal is one line."""
import os
import sys

import numpy as np
import pytest
import soundfile as sf

from audionmf.cli import main

from conftest import SAMPLE


@pytest.fixture
def trio(tmp_path):
    mix, sr = sf.read(SAMPLE, frames=2 * 22050)
    folder = tmp_path / "album"
    folder.mkdir()
    for name in ("a", "b", "c"):
        sf.write(folder / f"{name}.wav", mix, sr)
    return folder


def written(out):
    return sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_unexpected_error_in_one_file_fails_that_file_only(tmp_path, trio, monkeypatch, capsys, jobs):
    """Any exception of one file (a bug, the machine's memory) is that file's failure,
    reported in one line; the files after it are separated (with --jobs 1 in this
    process, where the fault can be planted)."""
    import audionmf.cli.separate as command

    real = command.separate_file

    def faulty(path, folder, **options):
        if os.path.basename(path) == "b.wav":
            raise MemoryError("planted by the test")
        return real(path, folder, **options)

    monkeypatch.setattr(command, "separate_file", faulty)
    out = tmp_path / "out"
    if jobs == "2":  # worker processes cannot see the plant: a file they cannot read instead
        (trio / "b.wav").write_bytes(b"RIFF")
        monkeypatch.undo()
    code = main(["separate", str(trio), "-o", str(out), "-q", "--iterations", "5", "--jobs", jobs])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert written(out) == [f"{s}/source{i}.wav" for s in "ac" for i in (1, 2)]
    assert len(err) == 2 and "b.wav" in err[0] and "1 of 3 inputs failed" in err[1]
    if jobs == "1":
        assert "internal error: MemoryError: planted by the test" in err[0]
