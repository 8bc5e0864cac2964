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


def test_a_name_that_is_not_utf8_is_separated(tmp_path, capsys):
    """Legal on Linux, common on old archives: soundfile is given the name's bytes."""
    mix, sr = sf.read(SAMPLE, frames=22050)
    folder = os.fsencode(tmp_path / "album")
    os.mkdir(folder)
    for name in (b"a.wav", b"b\xe9.wav"):
        sf.write(os.path.join(folder, name), mix, sr, format="WAV")  # (soundfile takes bytes)
    out = tmp_path / "out"
    assert main(["separate", os.fsdecode(folder), "-o", str(out), "-q", "--iterations", "5"]) == 0
    assert sorted(os.listdir(os.fsencode(out))) == [b"a", b"b\xe9"]
    assert sorted(os.listdir(os.path.join(os.fsencode(out), b"b\xe9"))) == [b"source1.wav", b"source2.wav"]
    assert capsys.readouterr().err == ""


def test_a_name_too_long_for_its_temporary_file_is_refused_before_any_work(tmp_path, monkeypatch):
    """A model named near the file system's limit (here 160 bytes, as on encrypted
    home folders): its output's hidden temporary name would not fit, which used to
    fail after the whole separation."""
    from audionmf import AudioError, SourceModel, separate_file
    from audionmf.io import Signal

    mix, sr = sf.read(SAMPLE, frames=22050)
    name = "m" * 150
    real_pathconf = os.pathconf
    monkeypatch.setattr(os, "pathconf", lambda path, key: 160 if key == "PC_NAME_MAX" else real_pathconf(path, key))
    model = SourceModel(name=name, templates=np.ones((1025, 2)), sr=sr)
    other = SourceModel(name="other", templates=np.ones((1025, 2)), sr=sr)
    path = tmp_path / "mix.wav"
    sf.write(path, mix, sr)
    reads = []
    real = Signal.read

    def read(self, start, stop):
        reads.append((start, stop))
        return real(self, start, stop)

    monkeypatch.setattr(Signal, "read", read)
    with pytest.raises(AudioError, match=f"{name}.wav: the name is too long"):
        separate_file(path, tmp_path / "out", models=[model, other])
    assert reads == [] and sorted(os.listdir(tmp_path)) == ["mix.wav"]


BAD = ["0", "-1", "nan", "inf", "1e300", str(2**70), "x", ""]


@pytest.mark.parametrize("command, option, accepted, refused", [
    ("separate", "--sources", ["1", "64"], BAD + ["65"]),
    ("separate", "--components", ["2", "4096"], BAD + ["1", "4097"]),
    ("separate", "--group", ["0-4095"], ["-1", "4096", "0-4096", "0-" + str(2**70), "x", "3-1", ""]),
    ("separate", "--rhythm", ["0", "1000"], ["-1", "nan", "inf", "1e300", "1000.5", "x", ""]),
    ("separate", "--free", ["0"], ["-1", "nan", "inf", "1e300", str(2**70), "x", ""]),
    ("separate", "--iterations", ["1", str(2**70)], BAD),
    ("separate", "--n-fft", ["4", "1048576"], BAD[1:] + ["1", "2", "1048577"]),
    ("separate", "--hop", ["1", "1405"], BAD + ["1406", "2048"]),  # (hann, n_fft 2048)
    ("separate", "--beta", ["-10", "10", "kl", "is"], ["nan", "inf", "1e300", str(2**70), "x", "", "10.5"]),
    ("separate", "--seed", ["0", str(2**70)], ["-1", "nan", "inf", "1e300", "x", ""]),
    ("separate", "--jobs", ["1", str(2**70)], BAD),
    ("separate", "--two-stems", ["drums", "vocals"], ["bass", "", "x"]),
    ("separate", "--format", ["wav", "flac"], ["mp3", "", "WAV"]),
    ("learn", "--components", ["1", "4096"], BAD + ["4097"]),
    ("learn", "--fits", ["1", "8"], BAD + ["9"]),
    ("learn", "--context", ["0", "32"], BAD[1:] + ["33"]),
    ("learn", "--pitch-range", ["0", "24"], BAD[1:] + ["25"]),
    ("learn", "--sparsity", ["0", "1e300"], ["-1", "nan", "inf", "x", ""]),
    ("learn", "--iterations", ["1", "100000"], BAD + ["100001"]),
    ("learn", "--sr", ["1", "768000"], BAD + ["768001"]),
    ("decompose", "--components", ["1", "4096"], BAD + ["4097"]),
    ("denoise", "--reduction", ["0.5", "120"], ["0", "-1", "nan", "inf", "x", ""]),
    ("denoise", "--noise-from", ["0:1", "0.5:2.5"], ["1:1", "2:1", "x", "1", "nan:2", "0:inf", ""]),
    ("denoise", "--iterations", ["1", str(2**70)], BAD),
])
def test_every_option_at_its_bounds_and_past_them(tmp_path, capsys, command, option, accepted, refused):
    """Past a bound or absurd: one line, exit 2, before any work and with nothing left.
    At a bound: accepted, which a missing input then shows (exit 1, 'no such file')."""
    missing = str(tmp_path / "missing.wav")
    out = tmp_path / "out"
    head = {"separate": ["separate", missing, "-o", str(out)],
            "learn": ["learn", "name", missing, "-o", str(out) + ".npz"],
            "decompose": ["decompose", missing, "-o", str(out) + ".npz"],
            "denoise": ["denoise", missing, "-o", str(out)]}[command]
    for value in accepted + refused:
        code = main(head + [f"{option}={value}"])
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, (option, value, err)
        if value in accepted:
            assert code == 1 and "no such file" in err[0], (option, value, err)
        else:
            assert code == 2 and option.split("=")[0] in err[0], (option, value, err)
        assert os.listdir(tmp_path) == [], (option, value)


@pytest.mark.parametrize("free", [0, 10**9])
def test_a_full_disk_is_named_as_such(tmp_path, monkeypatch, capsys, free):
    """libsndfile reports a write to a full disk as "System error": the message says
    what is wrong where the folder's file system has no room, and nothing is left."""
    import shutil

    mix, sr = sf.read(SAMPLE, frames=22050)
    path = tmp_path / "mix.wav"
    sf.write(path, mix, sr)

    def no_room(self, data):
        raise RuntimeError("Error writing: System error.")

    real_usage = shutil.disk_usage
    monkeypatch.setattr(sf.SoundFile, "write", no_room)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: real_usage(folder)._replace(free=free))
    assert main(["separate", str(path), "-o", str(tmp_path / "out"), "-q", "--iterations", "5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    reason = "No space left on device" if free == 0 else "System error"
    assert len(err) == 1 and f"source1.wav: cannot write ({reason})" in err[0], err
    assert sorted(os.listdir(tmp_path)) == ["mix.wav"]


def test_learn_names_the_example_whose_rate_is_refused(tmp_path, capsys):
    """The model's rate is the first file's: a file above 768 kHz is named, before any fit."""
    path = tmp_path / "bat.wav"
    sf.write(path, np.random.default_rng(0).standard_normal(100_000) * 0.1, 1_000_000)
    assert main(["learn", "bats", str(path), "-o", str(tmp_path / "bats.npz")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"audionmf: error: {path}: sr=1000000: a sampling rate of at most 768000 Hz is "
                   "expected; resample it, or pass sr"]
    assert sorted(os.listdir(tmp_path)) == ["bat.wav"]
