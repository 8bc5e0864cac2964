"""The README's promises about bad input, batches and signals that no other test
backed (issue #26). Each test names, in its docstring, the sentence it backs, and
the tests elsewhere that back the rest of it."""
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import soundfile as sf

from audionmf.cli import main

from conftest import ROOT, SAMPLE

SR = 8000


def music(seconds=1.0, channels=1, sr=SR, level=0.3):
    """A gated tone and noise bursts, different in every channel."""
    rng = np.random.default_rng(channels)
    t = np.arange(int(seconds * sr)) / sr
    tone = np.sin(2 * np.pi * 330 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    bursts = rng.standard_normal((channels, t.size)) * (np.sin(2 * np.pi * 5 * t) > 0.8)
    y = np.stack([np.roll(tone, 41 * c) for c in range(channels)]) + 0.3 * bursts
    return level * y / np.abs(y).max()


def written(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def one_line(capsys):
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("channels", [3, 4, 5, 6, 7])
def test_every_channel_count_from_3_to_7(tmp_path, channels):
    """README: "any channel count (1 to 8 tested)". 1, 2 and 8 channels are
    test_hardening.py::test_inputs_that_work; these are the counts between."""
    y = music(1.0, channels)
    path = tmp_path / "in.wav"
    sf.write(path, y.T, SR, subtype="FLOAT")
    out = tmp_path / "out"
    assert main(["separate", str(path), "-o", str(out), "-q", "--iterations", "5"]) == 0
    assert written(out) == ["in/source1.wav", "in/source2.wav"]
    parts = [sf.read(out / "in" / f"source{i}.wav", always_2d=True) for i in (1, 2)]
    assert all(sr == SR and part.shape == y.T.shape for part, sr in parts)
    np.testing.assert_allclose(parts[0][0] + parts[1][0], y.T, atol=1e-6)


@pytest.mark.parametrize("command", ["separate", "decompose", "plot"])
def test_a_sample_rate_above_768_khz_is_refused(tmp_path, capsys, command):
    """README: "any sample rate up to 768 kHz", and a file at a higher rate refused in
    one line naming it, with nothing left (768 kHz itself: test_hardening_cli.py::
    test_every_option_at_its_bounds_and_past_them, for learn --sr)."""
    path = tmp_path / "fast.wav"
    sf.write(path, music(0.2, sr=1_000_000)[0], 1_000_000, subtype="FLOAT")
    out = tmp_path / {"separate": "out", "decompose": "f.npz", "plot": "f.png"}[command]
    assert main([command, str(path), "-o", str(out), "--iterations", "5"]) == 1
    assert one_line(capsys) == (f"audionmf: error: {path}: sr=1000000: a sampling rate of at most "
                                "768000 Hz is expected")
    assert sorted(os.listdir(tmp_path)) == ["fast.wav"]


@pytest.mark.parametrize("command", ["separate", "denoise"])
def test_a_folder_without_audio_files_is_refused_as_such(tmp_path, capsys, command):
    """README: "Refused inputs: ... a folder without audio files"; separate and denoise
    take folders, so the message says what this one lacks."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("no audio here")
    assert main([command, str(folder), "-o", str(tmp_path / "out"), "-q"]) == 1
    message = (f"audionmf: error: {folder}: a folder with no audio files in it "
               "(files ending in .wav, .flac, .ogg, .oga, .mp3, .aiff, .aif, .au)")
    assert one_line(capsys) == message
    assert sorted(os.listdir(tmp_path)) == ["notes"]
    # nor taken for done by --skip-existing where a file of the same stem was separated
    done = tmp_path / "out" / "notes"
    done.mkdir(parents=True)
    for name in {"separate": ["source1", "source2"], "denoise": ["speech", "noise"]}[command]:
        sf.write(done / f"{name}.wav", np.zeros(100), SR)
    assert main([command, str(folder), "-o", str(tmp_path / "out"), "-q", "--skip-existing"]) == 1
    assert one_line(capsys) == message


@pytest.mark.parametrize("command", ["learn", "decompose", "plot"])
def test_learn_decompose_and_plot_refuse_any_folder(tmp_path, capsys, command):
    """README: "Refused inputs: ... a folder without audio files (or any folder, for
    learn, decompose and plot)". This folder holds an audio file, and is refused."""
    folder = tmp_path / "album"
    folder.mkdir()
    sf.write(folder / "a.wav", music()[0], SR)
    out = tmp_path / {"learn": "m.npz", "decompose": "f.npz", "plot": "f.png"}[command]
    args = {"learn": ["learn", "name", str(folder)], "decompose": ["decompose", str(folder)],
            "plot": ["plot", str(folder)]}[command]
    assert main(args + ["-o", str(out)]) == 1
    assert one_line(capsys) == f"audionmf: error: {folder}: is a directory, not an audio file"
    assert sorted(os.listdir(tmp_path)) == ["album"]


def test_plot_refuses_samples_beyond_1e10(tmp_path, capsys):
    """README: "for separate, decompose and plot, samples beyond 1e10 (+200 dBFS)"
    are refused (separate and decompose: test_stream.py::
    test_samples_beyond_audio_are_refused_in_one_line)."""
    y = music()[0]
    y[SR // 2] = 3e10
    path = tmp_path / "loud.wav"
    sf.write(path, y, SR, subtype="DOUBLE")
    assert main(["plot", str(path), "-o", str(tmp_path / "f.png"), "--iterations", "5"]) == 1
    assert one_line(capsys) == (f"audionmf: error: {path}: the audio has a sample of magnitude "
                                "3e+10, beyond what audio holds (1e+10 at most)")
    assert sorted(os.listdir(tmp_path)) == ["loud.wav"]


def test_mp3_files_that_end_early_are_separated(tmp_path, capsys):
    """README: "MP3 files that end early are read as far as they go ... and separate
    gives them silence to the length their header gives" (where WAV, AIFF, W64, RF64,
    FLAC and Ogg files cut short are refused: test_io.py::test_a_file_cut_short_is_refused,
    test_an_ogg_cut_short_is_refused, test_hardening.py::test_inputs_that_are_refused)."""
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile writes no MP3")
    y = music(4.0)[0]
    whole = tmp_path / "whole.mp3"
    sf.write(whole, y, SR, format="MP3")
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.7)])
    declared = sf.info(str(cut)).frames
    assert 0 < declared
    out = tmp_path / "out"
    assert main(["separate", str(cut), "-o", str(out), "-q", "--iterations", "5"]) == 0
    assert capsys.readouterr().err == ""
    for i in (1, 2):
        source, sr = sf.read(out / "cut" / f"source{i}.wav")
        assert sr == SR and len(source) == declared and np.all(np.isfinite(source))


def test_ogg_files_that_end_inside_a_page_are_refused(tmp_path, capsys):
    """README: "Refused inputs: ... truncated (... Ogg files that end inside a page)":
    one line naming the file, exit status 1, nothing written."""
    if "OGG" not in sf.available_formats():
        pytest.skip("this libsndfile writes no Ogg")
    whole = tmp_path / "whole.ogg"
    sf.write(whole, music(4.0)[0], SR, format="OGG", subtype="VORBIS")
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.7)])
    out = tmp_path / "out"
    assert main(["separate", str(cut), "-o", str(out), "-q", "--iterations", "5"]) == 1
    assert one_line(capsys) == (f"audionmf: error: {cut}: truncated: it ends inside an Ogg page, at "
                                f"byte {cut.stat().st_size} (an interrupted download or copy?)")
    assert not out.exists()


def test_flac_outputs_refuse_samples_beyond_full_scale(tmp_path, capsys):
    """README: "FLAC outputs refuse samples beyond full scale rather than clip them
    ... use the default float WAV then", through the command line (io's save:
    test_io.py::test_integer_formats_refuse_to_clip); nothing is left behind."""
    t = np.arange(2 * SR) / SR
    y = 1.4 * np.sin(2 * np.pi * 440 * t) * (t > 0.5) + 0.05 * np.sin(2 * np.pi * 3000 * t)
    path = tmp_path / "hot.wav"
    sf.write(path, y, SR, subtype="FLOAT")
    out = tmp_path / "out"
    assert main(["separate", str(path), "-o", str(out), "-q", "--iterations", "5", "--format", "flac"]) == 1
    line = one_line(capsys)
    assert line.startswith(f"audionmf: error: {path}: {out / 'hot'}/source") and (
        "beyond the [-1, 1] that FLAC PCM_24 holds; write a float WAV instead of clipping" in line)
    assert sorted(os.listdir(tmp_path)) == ["hot.wav"]
    assert main(["separate", str(path), "-o", str(out), "-q", "--iterations", "5"]) == 0  # float WAV
    parts = [sf.read(out / "hot" / f"source{i}.wav")[0] for i in (1, 2)]
    assert max(np.abs(part).max() for part in parts) > 1
    np.testing.assert_allclose(parts[0] + parts[1], y, atol=1e-6)


def test_debug_shows_the_traceback_behind_an_error(tmp_path, capsys):
    """README: "--debug shows the traceback behind an error" (without it: one line)."""
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file" * 20)
    expected = f"audionmf: error: {junk}: not a readable audio file"
    for command in (["separate", str(junk), "-o", str(tmp_path / "out")],
                    ["decompose", str(junk), "-o", str(tmp_path / "f.npz")]):
        assert main(command) == 1
        assert one_line(capsys).startswith(expected)
        assert main(command + ["--debug"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[0] == "Traceback (most recent call last):" and "AudioError" in err[-2]
        assert err[-1].startswith(expected)
    assert sorted(os.listdir(tmp_path)) == ["junk.wav"]


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_a_model_path_that_is_not_a_regular_file_is_refused_by_the_command(tmp_path, capsys, kind):
    """README: "a model path that is not a regular file is refused", through the command
    (SourceModel.load: test_hardening_inputs.py::
    test_a_model_path_that_is_not_a_regular_file_is_refused_before_reading): /dev/zero
    would be read until memory runs out, a named pipe with no writer would block."""
    mix = tmp_path / "mix.wav"
    sf.write(mix, music()[0], SR)
    model = "/dev/zero" if kind == "device" else str(tmp_path / "model.npz")
    if kind == "fifo":
        os.mkfifo(model)
    result = {}
    runner = threading.Thread(daemon=True, target=lambda: result.update(code=main(
        ["separate", str(mix), "--model", model, "-o", str(tmp_path / "out")])))
    runner.start()
    runner.join(30)
    assert not runner.is_alive(), "the model path blocked"
    assert result["code"] == 1
    assert one_line(capsys) == (f"audionmf: error: {model}: not a regular file (a device, pipe or "
                                "socket): a model is an .npz file written by 'audionmf learn'")
    assert not (tmp_path / "out").exists()


PLANT = '''\
import os
import sys
if os.environ.get("AUDIONMF_TEST_FAULT"):
    import audionmf.separate
    _separate = sys.modules["audionmf.separate"]  # (audionmf.separate is also the function)
    _real = _separate.separate_file

    def separate_file(path, folder, **options):
        if os.path.basename(os.fspath(path)) == os.environ["AUDIONMF_TEST_FAULT"]:
            raise MemoryError("planted by the test in process %d" % os.getpid())
        return _real(path, folder, **options)

    _separate.separate_file = separate_file
'''


def test_an_unexpected_error_in_a_worker_process_fails_that_file_only(tmp_path):
    """README: "any unexpected error of one file fails that file only, in one line, and
    the batch goes on", with --jobs 2: the error is raised in a worker process (planted
    there by a sitecustomize module; --jobs 1 in this process is test_hardening_cli.py::
    test_an_unexpected_error_in_one_file_fails_that_file_only)."""
    plant = tmp_path / "plant"
    plant.mkdir()
    (plant / "sitecustomize.py").write_text(PLANT)
    album = tmp_path / "album"
    album.mkdir()
    for name in ("a", "b", "c", "d"):
        sf.write(album / f"{name}.wav", music(1.0)[0], SR)
    out = tmp_path / "out"
    env = dict(os.environ, AUDIONMF_TEST_FAULT="b.wav",
               PYTHONPATH=os.pathsep.join([str(plant), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "audionmf", "separate", str(album), "-o", str(out),
                             "--jobs", "2", "--iterations", "5", "-q"],
                            stderr=subprocess.PIPE, text=True, env=env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "sitecustomize" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith(f"audionmf: error: {album / 'b.wav'}: internal error: MemoryError: "
                               "planted by the test in process ")
    assert int(lines[0].split("in process ")[1].split()[0]) != proc.pid  # a worker's
    assert lines[1] == f"audionmf: error: 1 of 4 inputs failed: {album / 'b.wav'}"
    assert written(out) == [f"{s}/source{i}.wav" for s in "acd" for i in (1, 2)]
