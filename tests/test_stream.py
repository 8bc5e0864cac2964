"""Block-by-block processing: the same results as one block, memory bounded by a block."""
import os
import sys

import librosa
import numpy as np
import pytest
import soundfile as sf

import audionmf
from audionmf import AudioError, ParameterError, SourceModel, istft, separate, stft
from audionmf.io import OutputFiles, Signal
from audionmf.limits import Limits
from audionmf.separate import SpectraSummary, configure, separate_file
from audionmf.spectrogram import OverlapAdd, STFTParams, frame_span, stft_frames

from conftest import gated, rel_error, separate_without_vote, tone

SR = 8000


def mixture(seconds=6.0):
    a = 0.3 * gated(tone(440, SR, seconds, (1, 0.5, 0.25)), SR, period=1.0, duty=0.5)
    b = 0.3 * gated(tone(1250, SR, seconds, (1, 0.3)), SR, period=0.7, duty=0.5, offset=0.2)
    return a, b


def read_block(y, t0, t1, params):
    first, end = frame_span(t0, t1, params)
    segment = np.zeros((*y.shape[:-1], end - first), dtype=y.dtype)
    lo, hi = max(first, 0), min(end, y.shape[-1])
    segment[..., lo - first : hi - first] = y[..., lo:hi]
    return segment


@pytest.mark.parametrize("n_fft, hop", [(512, 128), (512, 256), (256, 100), (64, 40), (4, 1)])
@pytest.mark.parametrize("block", [1, 3, 50])
@pytest.mark.parametrize("channels", [(), (2,)])
def test_blockwise_stft_and_istft_equal_whole(rng, n_fft, hop, block, channels):
    y = rng.standard_normal((*channels, 3001))
    params = STFTParams(n_fft, hop)
    S = stft(y, n_fft=n_fft, hop_length=hop)
    whole = istft(S, length=y.shape[-1], n_fft=n_fft, hop_length=hop)
    inverse = OverlapAdd(params, y.shape[-1], channels)
    pieces = []
    for t0 in range(0, S.shape[-1], block):
        t1 = min(S.shape[-1], t0 + block)
        S_block = stft_frames(read_block(y, t0, t1, params), params)
        np.testing.assert_array_equal(S_block, S[..., t0:t1])
        pieces.append(inverse.add(S_block))
    pieces.append(inverse.close())
    np.testing.assert_allclose(np.concatenate(pieces, axis=-1), whole, rtol=0, atol=1e-12)
    np.testing.assert_allclose(whole, librosa.istft(S, n_fft=n_fft, hop_length=hop, length=y.shape[-1]),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("block", [1, 7, 300])
@pytest.mark.parametrize("small_fft", [2**62, 40000, 0])
def test_single_precision_spectra_are_the_same_in_any_block(monkeypatch, rng, block, small_fft):
    """The separation transforms float32 blocks: a frame's spectrum must not depend
    on the block around it, nor on the number of FFT threads, nor on which library
    transforms the signal (chosen by its length: 40000 puts the signal's 80384 frame
    samples on scipy.fft and a block's on numpy.fft, were the block's own size to choose)."""
    from audionmf import _threads, spectrogram

    monkeypatch.setattr(spectrogram, "SMALL_FFT_FRAMES", small_fft)
    y = rng.standard_normal((2, 20000)).astype(np.float32)
    params = STFTParams(512, 128)
    S = stft(y, n_fft=512, hop_length=128)
    assert S.dtype == np.complex64
    for workers in (1, 3):
        with _threads.cores_limited(workers):
            for t0 in range(0, S.shape[-1], block):
                t1 = min(S.shape[-1], t0 + block)
                S_block = stft_frames(read_block(y, t0, t1, params), params, length=y.shape[-1])
                assert S_block.dtype == np.complex64
                np.testing.assert_array_equal(S_block, S[..., t0:t1])


def test_half_precision_is_transformed_in_double(rng):
    y = rng.standard_normal(3000).astype(np.float16)
    S = stft(y, n_fft=256)
    assert S.dtype == np.complex128
    np.testing.assert_array_equal(S, stft(y.astype(np.float64), n_fft=256))


def test_overlap_add_pieces_are_final(rng):
    """A piece, once returned, is never changed by later frames: the output of
    the first blocks does not depend on what comes after."""
    params = STFTParams(256, 64)
    y = rng.standard_normal(4000)
    S = stft(y, n_fft=256, hop_length=64)
    first = OverlapAdd(params, len(y)).add(S[:, :20])
    other = S.copy()
    other[:, 20:] = 0
    again = OverlapAdd(params, len(y)).add(other[:, :20])
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first, y[: len(first)], atol=1e-12)
    assert len(first) == 20 * 64 - 128


@pytest.mark.parametrize("small_fft", [2**62, 100000, 0])
def test_block_size_does_not_change_the_sources(monkeypatch, small_fft):
    """Whichever library transforms the signal (numpy's for a short one, scipy's for a
    long one), its blocks are transformed alike (100000: the signal's frames on scipy.fft,
    a block's on numpy.fft, were the block's own size to choose)."""
    from audionmf import spectrogram

    monkeypatch.setattr(spectrogram, "SMALL_FFT_FRAMES", small_fft)
    a, b = mixture()
    y = np.vstack([a + b, 0.5 * a + b])
    reference = separate(y, SR, n_fft=512, random_state=0)
    blocked = separate(y, SR, n_fft=512, random_state=0, limits=Limits(block_values=257 * 7))
    for name in reference:
        np.testing.assert_allclose(blocked[name], reference[name], rtol=0, atol=1e-12)
    np.testing.assert_allclose(sum(blocked.values()), y, atol=1e-12)


def test_long_signal_learns_on_excerpts(monkeypatch):
    a, b = mixture(12.0)
    reference = separate(a + b, SR, n_fft=512, random_state=0)
    # Force the long-signal path: fit on 8 excerpts of 20 frames, activations per block.
    limits = Limits(fit_values=257 * 20 * 8, excerpt_frames=20, block_values=257 * 40)
    calls = []
    real_nmf = audionmf.nmf

    def counting_nmf(V, *args, **kwargs):
        calls.append(V.shape[1])
        return real_nmf(V, *args, **kwargs)

    for module in ("audionmf.modes.blind", "audionmf.modes.base"):  # the mode's fits, a block's
        monkeypatch.setattr(sys.modules[module], "nmf", counting_nmf)
    excerpts = separate(a + b, SR, n_fft=512, random_state=0, limits=limits)
    n_frames = 1 + len(a) // 128
    # One fit and, the notes being sustained, its refinement on the same excerpts; then each block.
    assert calls[:2] == [160, 160] and len(calls) == 2 + -(-n_frames // 40)
    np.testing.assert_allclose(sum(excerpts.values()), a + b, atol=1e-12)
    # Steady sources: the excerpts teach the same templates as the whole signal.
    for name in reference:
        error = np.linalg.norm(excerpts[name] - reference[name]) / np.linalg.norm(reference[name])
        assert error < 0.05, (name, error)


def test_long_signal_with_models_and_context():
    a, b = mixture(8.0)
    models = [SourceModel.learn(s, SR, name=n, n_components=3, n_fft=512, context=1, max_iter=60,
                                random_state=0) for n, s in (("low", a), ("high", b))]
    limits = Limits(fit_values=257 * 3 * 40, block_values=257 * 30)
    reference = separate_without_vote(a + b, SR, models)
    streamed = separate_without_vote(a + b, SR, models, limits=limits)
    for name, truth in (("low", a), ("high", b)):
        # The models' activations of each frame do not depend on the block it falls in.
        np.testing.assert_allclose(streamed[name], reference[name], atol=2e-3 * np.abs(truth).max())
    # With the vote, whose parts a long signal learns on excerpts and splits block by
    # block: the sources still sum to the input, and separate as well as the whole's.
    voted = separate(a + b, SR, models=models)
    streamed = separate(a + b, SR, models=models, limits=limits)
    np.testing.assert_allclose(sum(streamed.values()), a + b, atol=1e-12)
    for name, truth in (("low", a), ("high", b)):
        whole, blocks = rel_error(voted[name], truth), rel_error(streamed[name], truth)
        assert blocks < 1.2 * whole + 1e-3, (name, whole, blocks)


def test_separate_file_equals_separate(tmp_path):
    a, b = mixture()
    y = np.vstack([a + b, 0.7 * a + b]).astype(np.float32)
    path = tmp_path / "mix.wav"
    sf.write(path, y.T, SR, subtype="FLOAT")
    written = separate_file(path, tmp_path / "out", n_fft=512, random_state=0)
    assert sorted(os.listdir(tmp_path / "out")) == ["source1.wav", "source2.wav"]
    in_memory = separate(y, SR, n_fft=512, random_state=0)
    for name, file in written.items():
        data, sr = sf.read(file, dtype="float32", always_2d=True)
        assert sr == SR
        np.testing.assert_allclose(data.T, in_memory[name], atol=1e-6)


@pytest.mark.parametrize("link", [False, True])
def test_separate_file_never_overwrites_its_input(tmp_path, link):
    """As the command line refuses it: a mixture named like one of its sources, in
    the folder the sources go to (or reached there through a link)."""
    a, b = mixture()
    folder = tmp_path / "stems"
    folder.mkdir()
    path = folder / "source1.wav"
    sf.write(path, (a + b).astype(np.float32), SR, subtype="FLOAT")
    before = path.read_bytes()
    if link:
        (tmp_path / "mix.wav").symlink_to(path)
        path = tmp_path / "mix.wav"
    with pytest.raises(AudioError, match="source1.wav is the input file"):
        separate_file(path, folder, n_fft=512, random_state=0)
    assert (folder / "source1.wav").read_bytes() == before
    assert sorted(os.listdir(folder)) == ["source1.wav"]


def test_separate_file_checks_its_format(tmp_path):
    path = tmp_path / "mix.wav"
    sf.write(path, np.concatenate(mixture()), SR)
    with pytest.raises(ParameterError, match="format='.wav': expected 'wav' or 'flac'"):
        separate_file(path, tmp_path / "out", format=".wav", n_fft=512)
    assert not (tmp_path / "out").exists()


def test_separate_file_reads_a_block_at_a_time(tmp_path, monkeypatch):
    a, b = mixture(20.0)
    path = tmp_path / "long.flac"
    sf.write(path, (a + b) / 2, SR, subtype="PCM_24")
    limits = Limits(fit_values=257 * 32 * 4, excerpt_frames=32, block_values=257 * 64)
    spans = []
    real_read = Signal.read

    def recording_read(self, start, stop):
        spans.append(stop - start)
        return real_read(self, start, stop)

    monkeypatch.setattr(Signal, "read", recording_read)
    written = separate_file(path, tmp_path / "out", n_fft=512, random_state=0, limits=limits)
    block_samples = frame_span(0, 64, STFTParams(512))[1] - frame_span(0, 64, STFTParams(512))[0]
    assert max(spans) <= block_samples  # no read of more than one block of the 20 s
    total = sum(sf.read(f)[0] for f in written.values())
    np.testing.assert_allclose(total, sf.read(path)[0], atol=1e-6)


def test_nan_in_the_middle_of_a_long_file_leaves_nothing(tmp_path):
    a, b = mixture(10.0)
    y = (a + b).astype(np.float32)
    y[7 * SR] = np.nan
    path = tmp_path / "bad.wav"
    sf.write(path, y, SR, subtype="FLOAT")
    limits = Limits(fit_values=257 * 20 * 2, excerpt_frames=20, block_values=257 * 40)
    with pytest.raises(AudioError, match=rf"bad\.wav: NaN or Inf samples \(the first at 7\.00 s, sample {7 * SR}\)"):
        separate_file(path, tmp_path / "out", n_fft=512, limits=limits)
    assert sorted(os.listdir(tmp_path)) == ["bad.wav"]


def test_samples_beyond_audio_are_refused_in_one_line(tmp_path, capsys):
    from audionmf import cli
    from audionmf._validation import MAX_SAMPLE

    a, b = mixture(3.0)
    y = a + b
    y[2 * SR] = 3 * MAX_SAMPLE  # a float file can hold it; float32 spectra could not
    path = tmp_path / "loud.wav"
    sf.write(path, y, SR, subtype="DOUBLE")
    assert cli.main(["separate", str(path), "-o", str(tmp_path / "out"), "-q"]) != 0
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"audionmf: error: {path}: a sample of magnitude 3e+10 at 2.00 s, sample {2 * SR}, "
        "beyond what audio holds (1e+10 at most)"]
    assert sorted(os.listdir(tmp_path)) == ["loud.wav"]
    with pytest.raises(ParameterError, match=r"the audio has a sample of magnitude 3e\+10, beyond"):
        separate(y, SR, random_state=0)
    assert cli.main(["decompose", str(path), "-o", str(tmp_path / "d.npz")]) != 0
    assert capsys.readouterr().err.strip().splitlines() == [
        f"audionmf: error: {path}: the audio has a sample of magnitude 3e+10, beyond what audio "
        "holds (1e+10 at most)"]
    assert sorted(os.listdir(tmp_path)) == ["loud.wav"]
    with Signal.open(path) as signal:  # files too long to load are checked as they are read
        signal.read(0, SR)
        with pytest.raises(AudioError, match=rf"loud\.wav: a sample of magnitude 3e\+10 at 2\.00 s, sample {2 * SR},"):
            signal.read(SR, 3 * SR)


@pytest.mark.parametrize("options", [{"n_sources": 2}, {"two_stems": "drums"}])
def test_the_loudest_audio_separates_into_finite_sources_that_sum_to_it(options):
    from audionmf._validation import MAX_SAMPLE

    # The loudest sample accepted: its single-precision spectra must not overflow.
    a, b = mixture(3.0)
    y = (a + b) / np.abs(a + b).max() * MAX_SAMPLE
    sources = np.array(list(separate(y, SR, random_state=0, **options).values()))
    assert np.all(np.isfinite(sources)) and min(np.abs(s).max() for s in sources) > 1e-3 * MAX_SAMPLE
    np.testing.assert_allclose(sources.sum(axis=0), y, rtol=0, atol=1e-12 * MAX_SAMPLE)


def test_single_precision_spectra_change_the_sources_only_by_round_off(monkeypatch):
    import audionmf.spectrogram as spectrogram

    stream = sys.modules["audionmf._blocks"]
    a, b = mixture(3.0)
    y = a + b
    single = separate(y, SR, n_sources=2, random_state=0)
    monkeypatch.setattr(stream, "_stft", lambda segment, params, length: spectrogram.stft_frames(
        segment, params, length=length))
    double = separate(y, SR, n_sources=2, random_state=0)
    for name in single:  # the same fit (to float32 spectrogram round-off), then the same masks
        error = np.linalg.norm(single[name] - double[name]) / np.linalg.norm(double[name])
        assert error < 1e-4, (name, error)


def test_double_precision_functions_take_any_finite_samples():
    # The sample limit is for single-precision spectra only: stft and evaluate work in double.
    from audionmf._validation import MAX_SAMPLE

    a, b = mixture(1.0)
    loud = 1e3 * MAX_SAMPLE * a
    assert np.all(np.isfinite(stft(loud, n_fft=512)))
    scores = audionmf.evaluate({"a": a, "b": b}, {"a": loud, "b": b}, SR)
    assert np.isfinite(scores["sources"]["b"]["sdr"])


def test_load_refuses_only_what_its_dtype_cannot_hold(tmp_path):
    path = tmp_path / "huge.wav"
    y = np.zeros(SR)
    y[SR // 2] = 1e200
    sf.write(path, y, SR, subtype="DOUBLE")
    with pytest.raises(AudioError, match=rf"huge\.wav: a sample of magnitude 1e\+200 at 0\.50 s, "
                                         rf"sample {SR // 2}, beyond what float32 holds"):
        audionmf.load(path, dtype=np.float32)
    assert audionmf.load(path, dtype=np.float64)[0][SR // 2] == 1e200  # float64 holds it


def test_silent_long_file_is_refused(tmp_path):
    path = tmp_path / "quiet.wav"
    sf.write(path, np.zeros(10 * SR), SR)
    limits = Limits(fit_values=257 * 40)
    a = SourceModel.learn(mixture(2.0)[0], SR, name="a", n_components=2, n_fft=512, max_iter=20)
    b = SourceModel.learn(mixture(2.0)[1], SR, name="b", n_components=2, n_fft=512, max_iter=20)
    with pytest.raises(ParameterError, match=r"quiet\.wav: silent"):
        separate_file(path, tmp_path / "out", models=[a, b], limits=limits)
    with pytest.raises(ParameterError, match=r"quiet\.wav: silent"):
        separate_file(path, tmp_path / "out", n_fft=512, limits=limits)
    assert sorted(os.listdir(tmp_path)) == ["quiet.wav"]


def test_sound_between_the_excerpts_is_found(tmp_path):
    """A long file whose only sound falls between the evenly spread excerpts is
    learned from its loudest stretches instead of being called silent."""
    a, b = mixture(2.0)
    y = np.zeros(20 * SR)
    y[9 * SR : 11 * SR] = a + b  # the middle; two excerpts sit at the two ends
    path = tmp_path / "sparse.wav"
    sf.write(path, y, SR, subtype="FLOAT")
    written = separate_file(path, tmp_path / "out", n_fft=512, random_state=0,
                            limits=Limits(fit_values=257 * 20 * 2, excerpt_frames=20))
    parts = [sf.read(f)[0] for f in written.values()]
    np.testing.assert_allclose(sum(parts), y, atol=1e-6)
    middle = slice(9 * SR, 11 * SR)
    assert min(np.abs(p[middle]).max() for p in parts) > 0.05  # both sources hold sound


def test_output_files_appear_together_or_not_at_all(tmp_path):
    paths = [tmp_path / "a.flac", tmp_path / "b.flac"]
    with OutputFiles(paths, SR, 1) as files:
        files.write(0, np.full(100, 0.5))
        files.write(1, np.full(100, -0.5))
        assert os.listdir(tmp_path) != [] and not any(p.exists() for p in paths)
        files.commit()
    assert [sf.read(p)[0].shape for p in paths] == [(100,), (100,)]
    other = [tmp_path / "c.flac", tmp_path / "d.flac"]
    with pytest.raises(AudioError, match=r"d\.flac: samples reach 1\.5"):
        with OutputFiles(other, SR, 1) as files:
            files.write(0, np.zeros(10))
            files.write(1, np.full(10, 1.5))
    assert sorted(os.listdir(tmp_path)) == ["a.flac", "b.flac"]


def test_signal_reads_zeros_outside_and_checks_samples(tmp_path):
    y = np.arange(10, dtype=np.float64).reshape(2, 5) / 10
    path = tmp_path / "x.wav"
    sf.write(path, y.T, SR, subtype="DOUBLE")
    for signal in (Signal(y, SR), Signal.open(path)):
        with signal:
            assert (signal.n_samples, signal.n_channels, signal.sr) == (5, 2, SR)
            block = signal.read(-2, 7)
            np.testing.assert_array_equal(block, np.pad(y, ((0, 0), (2, 2))))
    with pytest.raises(AudioError, match="no such file"):
        Signal.open(tmp_path / "missing.wav")


def test_spectra_summary_pools_power():
    a, b = mixture(3.0)
    y = a + b
    mode = configure(SR, {"n_fft": 512})
    X = stft(y, n_fft=512)
    power = np.abs(X) ** 2
    n_frames = X.shape[1]
    masks = np.stack([np.full(X.shape, 0.25), np.full(X.shape, 0.75)])
    summary = SpectraSummary(mode, Signal(y, SR), max_columns=n_frames // 4)
    for t0 in range(0, n_frames, 10):
        summary.add(t0, X[:, t0 : t0 + 10], masks[:, :, t0 : t0 + 10])
    spectra = summary.spectra()
    assert list(spectra) == ["mixture", "source1", "source2"]
    pool = summary.pool
    assert pool == 4 and summary.hop_length == 4 * 128  # 188 frames in at most 47 columns
    np.testing.assert_allclose(spectra["mixture"][:, 0], power[:, :pool].mean(axis=1))
    np.testing.assert_allclose(spectra["source2"], 0.75**2 * spectra["mixture"])


def test_reads_of_an_ogg_file_match_loading_it(tmp_path, rng):
    """Blocks, overlaps and jumps read the samples that loading the whole file gives
    (libsndfile's seek on an Ogg Vorbis handle that was already read can land off)."""
    path = tmp_path / "x.ogg"
    sf.write(path, 0.1 * rng.standard_normal((200000, 2)), 22050, format="OGG", subtype="VORBIS")
    whole, _ = sf.read(path, always_2d=True)
    with Signal.open(path) as signal:
        starts = [0, 3000, 2000, 50000, 10000, 190000, 90000, 5]
        starts += list(rng.integers(0, signal.n_samples, 60))
        for start in starts:
            stop = start + int(rng.integers(1, 4000))
            expected = np.zeros((2, stop - start))
            expected[:, : max(0, min(stop, len(whole)) - start)] = whole[start:stop].T
            np.testing.assert_array_equal(signal.read(start, stop), expected)
