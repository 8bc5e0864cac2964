import os
import re

import numpy as np
import pytest
import soundfile as sf

from audionmf import AudioError, ParameterError, load, save
from audionmf.io import OutputFiles, Signal, atomic_file

from conftest import SAMPLE


def test_load_the_bundled_sample():
    y, sr = load(SAMPLE)
    assert sr == 22050
    assert y.dtype == np.float32 and y.ndim == 1
    assert y.shape[0] == 10 * 22050
    assert 0 < np.abs(y).max() <= 1


@pytest.mark.parametrize("ext", [".wav", ".flac"])
@pytest.mark.parametrize("channels", [1, 2, 3])
def test_save_load_round_trip(tmp_path, rng, ext, channels):
    y = 0.5 * rng.uniform(-1, 1, (channels, 1000))
    y = y[0] if channels == 1 else y
    path = tmp_path / f"x{ext}"
    save(path, y, 16000)
    back, sr = load(path, dtype=np.float64)
    assert sr == 16000 and back.shape == y.shape
    tolerance = 1e-7 if ext == ".wav" else 2.0**-22  # float WAV vs 24-bit FLAC
    np.testing.assert_allclose(back, y, atol=tolerance)
    assert [p.name for p in tmp_path.iterdir()] == [f"x{ext}"]  # no temporary left


def test_resample_and_mono(tmp_path):
    sr = 16000
    t = np.arange(sr) / sr
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 440 * t)]) * 0.5
    path = tmp_path / "s.wav"
    save(path, stereo, sr)
    y, new_sr = load(path, sr=8000, mono=True)
    assert new_sr == 8000 and y.shape == (8000,)
    spectrum = np.abs(np.fft.rfft(y))
    assert np.argmax(spectrum) == 440  # 1 Hz bins over one second
    assert np.abs(y).max() == pytest.approx(0.375, rel=0.02)


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    """A umask for the test, the previous one given back after."""
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def test_save_replaces_atomically_with_a_new_files_permissions(tmp_path, rng, umask):
    path = tmp_path / "x.wav"
    save(path, rng.uniform(-0.5, 0.5, 100), 8000)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
    os.chmod(path, 0o600)  # replaced by a new file: the new file's permissions
    save(path, np.zeros(50), 8000)
    y, _ = load(path)
    assert y.shape == (50,)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["x.wav"]


def test_every_writer_gives_a_new_files_permissions(tmp_path, umask):
    with OutputFiles([tmp_path / "a.wav", tmp_path / "b.flac"], 8000, 1) as files:
        files.write(0, np.zeros(10))
        files.write(1, np.zeros(10))
        files.commit([(tmp_path / "c.png", b"figure")])
    with atomic_file(tmp_path / "d.npz") as handle:
        handle.write(b"model")
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {
        name: 0o666 & ~umask for name in ("a.wav", "b.flac", "c.png", "d.npz")}


def test_writing_never_changes_the_umask(tmp_path, monkeypatch):
    """The umask is the whole process's: setting it, even for a moment, gives the
    files that other threads create meanwhile its value (world-writable ones for 0)."""
    def refuse(mask):
        raise AssertionError("the umask was changed")

    monkeypatch.setattr(os, "umask", refuse)
    save(tmp_path / "x.flac", np.zeros(10), 8000)
    with atomic_file(tmp_path / "y.npz") as handle:
        handle.write(b"model")
    with OutputFiles([tmp_path / "z.wav"], 8000, 1) as files:
        files.write(0, np.zeros(10))
        files.commit()
    assert sorted(os.listdir(tmp_path)) == ["x.flac", "y.npz", "z.wav"]


def test_temporary_files_are_hidden_beside_the_target(tmp_path):
    """``.NAME.<random>.part``: what ``audionmf separate`` looks for to clean up."""
    with atomic_file(tmp_path / "x.npz") as handle:
        handle.write(b"model")
        (temporary,) = os.listdir(tmp_path)
        assert re.fullmatch(r"\.x\.npz\.[0-9a-f]{8}\.part", temporary)
    with OutputFiles([tmp_path / "a.wav"], 8000, 1):
        assert re.fullmatch(r"\.a\.wav\.[0-9a-f]{8}\.part", sorted(os.listdir(tmp_path))[0])
    assert os.listdir(tmp_path) == ["x.npz"]


def test_a_failed_write_leaves_the_target_as_it_was(tmp_path, monkeypatch):
    import audionmf.io as io

    path = tmp_path / "x.wav"
    save(path, np.zeros(10), 8000)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_file(path) as handle:
            handle.write(b"half a file")
            raise RuntimeError("disk on fire")

    def half_written(file, *args, **kwargs):
        file.write(b"RIFF")
        raise RuntimeError("Error : disk full")

    monkeypatch.setattr(io.sf, "write", half_written)
    with pytest.raises(AudioError, match=r"x\.wav: cannot write \(Error : disk full\)"):
        save(path, np.ones(10) / 2, 8000)
    assert os.listdir(tmp_path) == ["x.wav"] and path.read_bytes() == before


def test_no_file_handles_left(tmp_path):
    """A file error naming the output, not an OSError, and nothing left behind."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
    held = []
    try:
        with pytest.raises(OSError):
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        with pytest.raises(AudioError, match=r"x\.wav: cannot write \(Too many open files\)"):
            save(tmp_path / "x.wav", np.zeros(10), 8000)
        with pytest.raises(AudioError, match=r"y\.wav: cannot write \(Too many open files\)"):
            OutputFiles([tmp_path / "y.wav"], 8000, 1)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert os.listdir(tmp_path) == []


def test_save_refuses_bad_data(tmp_path):
    with pytest.raises(ParameterError, match="NaN or Inf"):
        save(tmp_path / "x.wav", np.array([0.0, np.nan]), 8000)
    with pytest.raises(ParameterError, match="cannot write '.mp4'"):
        save(tmp_path / "x.mp4", np.zeros(10), 8000)
    assert list(tmp_path.iterdir()) == []


def test_save_to_a_missing_folder(tmp_path):
    with pytest.raises(AudioError, match="cannot write"):
        save(tmp_path / "nope" / "x.wav", np.zeros(10), 8000)


def test_output_files_write_nothing_if_one_fails(tmp_path):
    with pytest.raises(ParameterError, match=r"b\.wav: refusing to write NaN or Inf"):
        with OutputFiles([tmp_path / "a.wav", tmp_path / "b.wav"], 8000, 1) as files:
            files.write(0, np.zeros(10))
            files.write(1, np.array([np.inf]))
    assert list(tmp_path.iterdir()) == []


def test_output_files_whose_temporary_file_cannot_be_made(tmp_path):
    """A name that is legal but leaves no room for the hidden temporary name (or a
    folder we may not write in) is a file error naming the output, not an OSError."""
    long_name = tmp_path / ("a" * 248 + ".wav")
    with pytest.raises(AudioError, match=r"a\.wav: cannot write \(File name too long\)"):
        with OutputFiles([tmp_path / "b.wav", long_name], 8000, 1):
            pass
    assert list(tmp_path.iterdir()) == []


def test_an_unreadable_file_says_so(tmp_path, monkeypatch):
    import audionmf.io as io

    path = tmp_path / "locked.wav"
    save(path, np.zeros(100), 8000)
    monkeypatch.setattr(io.os, "access", lambda p, mode: False)  # (root reads anything)

    def system_error(*args, **kwargs):
        raise RuntimeError("Error opening: System error.")  # what libsndfile says then

    monkeypatch.setattr(io.sf, "SoundFile", system_error)
    with pytest.raises(AudioError, match=r"locked\.wav: cannot be read \(Permission denied\)"):
        load(path)


def test_save_refuses_a_transposed_signal_and_flac_beyond_8_channels(tmp_path):
    with pytest.raises(ParameterError, match=r"more channels than samples.*pass y\.T"):
        save(tmp_path / "x.wav", np.zeros((1000, 2)), 8000)  # soundfile's layout, not ours
    with pytest.raises(ParameterError, match="FLAC holds at most 8 channels, not 10; write WAV"):
        save(tmp_path / "x.flac", np.zeros((10, 1000)), 8000)
    with pytest.raises(ParameterError, match="FLAC holds at most 8 channels"):
        OutputFiles([tmp_path / "y.flac"], 8000, 10)
    assert list(tmp_path.iterdir()) == []
    save(tmp_path / "x.wav", np.zeros((10, 1000)), 8000)  # WAV holds them


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="missing.wav: no such file"):
        load(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match="junk.wav: not a readable audio file"):
        load(junk)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1)), 8000)
    with pytest.raises(AudioError, match="empty.wav: holds no samples"):
        load(empty)
    with pytest.raises(AudioError, match="is a directory"):
        load(tmp_path)


def test_truncated_file(tmp_path, rng):
    good = tmp_path / "good.flac"
    save(good, rng.uniform(-0.5, 0.5, 20000), 8000)
    data = good.read_bytes()
    bad = tmp_path / "bad.flac"
    bad.write_bytes(data[:200])
    with pytest.raises(AudioError, match="bad.flac"):
        load(bad)


def _cut(path, n_bytes, to):
    to.write_bytes(path.read_bytes()[:n_bytes])
    return to


@pytest.mark.parametrize("ext, subtype", [(".wav", "PCM_16"), (".wav", "FLOAT"), (".aiff", "PCM_24"),
                                         (".w64", "PCM_16"), ("rf64", "PCM_16")])
def test_a_file_cut_short_is_refused(tmp_path, rng, ext, subtype):
    """libsndfile reads a WAV (AIFF, W64, RF64) cut short as a complete, shorter one;
    its header says otherwise."""
    y = rng.uniform(-0.5, 0.5, (2, 20000))
    good = tmp_path / f"good{ext if ext != 'rf64' else '.wav'}"
    sf.write(good, y.T, 8000, subtype=subtype, format="RF64" if ext == "rf64" else None)
    assert load(good)[0].shape == (2, 20000)
    bad = _cut(good, good.stat().st_size // 2, tmp_path / f"bad{good.suffix}")
    with pytest.raises(AudioError, match=r"bad\.\w+: truncated: its header declares 20000 samples"):
        load(bad)
    with pytest.raises(AudioError, match=r"bad\.\w+: truncated"):
        Signal.open(bad)


@pytest.mark.parametrize("size", [0xFFFFFFFF, 0x7FFFF000, "one byte more"])
def test_a_wav_whose_data_size_is_a_placeholder_is_read(tmp_path, rng, size):
    """Writers that stream (to a pipe) cannot know the length: they write 0xFFFFFFFF,
    or sox 0x7FFFF000. A size that overstates the data by less than one frame cuts
    no frame either."""
    y = rng.uniform(-0.5, 0.5, 2000)
    path = tmp_path / "streamed.wav"
    save(path, y, 8000)
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    declared = int.from_bytes(data[at : at + 4], "little") + 1 if size == "one byte more" else size
    data[at : at + 4] = declared.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    np.testing.assert_allclose(load(path)[0], y, atol=1e-7)


def test_an_mp3_that_ends_early_is_read_as_far_as_it_goes(tmp_path):
    """An MP3's length is an estimate where it has no Xing header (from the first
    frame's bitrate), so one that ends before it is not refused."""
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile writes no MP3")
    good = tmp_path / "good.mp3"
    t = np.arange(44100) / 22050
    sf.write(good, 0.3 * np.sin(2 * np.pi * 440 * t), 22050)
    bad = _cut(good, good.stat().st_size // 2, tmp_path / "bad.mp3")
    y, _ = load(bad)
    assert 0 < len(y) < 44100
    with Signal.open(bad) as signal:  # the length the header gives, silence past the end
        block = signal.read(0, signal.n_samples)
        assert block.shape[1] == 44100 and not np.any(block[:, -1000:])


def test_integer_formats_refuse_to_clip(tmp_path):
    loud = np.array([0.5, 1.5, -0.2])
    with pytest.raises(AudioError, match="beyond the \\[-1, 1\\]"):
        save(tmp_path / "x.flac", loud, 8000)
    save(tmp_path / "x.wav", loud, 8000)  # float WAV holds it
    np.testing.assert_allclose(load(tmp_path / "x.wav")[0], loud)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wav"]


def _ogg_pages(data):
    """The byte offsets where an Ogg file's pages end."""
    ends, at = [], 0
    while at < len(data):
        assert data[at : at + 4] == b"OggS"
        n = data[at + 26]
        at += 27 + n + sum(data[at + 27 : at + 27 + n])
        ends.append(at)
    return ends


@pytest.mark.skipif("OGG" not in sf.available_formats(), reason="this libsndfile has no Ogg")
def test_an_ogg_cut_short_is_refused(tmp_path, rng):
    """libsndfile reads an Ogg cut inside a page as a complete, shorter file; the page's
    header says otherwise. Cut on a page's boundary, it is a whole (shorter) stream."""
    t = np.arange(40000) / 8000
    y = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + rng.uniform(-0.1, 0.1, t.size))
    good = tmp_path / "good.ogg"
    sf.write(good, y, 8000)
    assert load(good)[0].shape == (40000,)
    data = good.read_bytes()
    ends = _ogg_pages(data)
    assert len(ends) >= 3
    for n_bytes in (ends[-2] + 10, len(data) - 1, ends[-2] + 20 + 27):
        bad = _cut(good, n_bytes, tmp_path / "bad.ogg")
        with pytest.raises(AudioError, match=rf"bad\.ogg: truncated: it ends inside an Ogg page, "
                                             rf"at byte {n_bytes}"):
            load(bad)
        with pytest.raises(AudioError, match=r"bad\.ogg: truncated"):
            Signal.open(bad)
    whole_pages = _cut(good, ends[-2], tmp_path / "pages.ogg")
    assert 0 < load(whole_pages)[0].shape[0] < 40000
    for tail in (b"not a page", b"O", b"OggS", b"OggS\x01"):  # left to the decoder, which reads the stream
        junk = tmp_path / "junk.ogg"
        junk.write_bytes(data + tail)
        np.testing.assert_allclose(load(junk)[0], load(good)[0])
