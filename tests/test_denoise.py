"""audionmf.denoise, separate(two_stems="noise") and `audionmf denoise`: properties on
synthetic speech-like signals (a harmonic voice with pauses in stationary coloured noise)."""
import numpy as np
import pytest
import soundfile as sf

from audionmf import ParameterError, _blocks, denoise, separate, separate_file
from audionmf._validation import AudioError
from audionmf.cli import main
from audionmf.io import Signal
from audionmf.limits import Limits
from audionmf.modes.denoise import denoise_n_fft, parse_span, quiet_frames
from audionmf.separate import configure
from audionmf.spectrogram import stft

SR = 8000
LEAD_IN = 1.0  # seconds of noise alone
BURSTS = [(1.0, 2.2), (2.6, 3.8), (4.3, 5.5)]  # where the voice speaks


def coloured_noise(n, rng):
    """Stationary noise, louder in the low bands (white noise through a one-pole low-pass)."""
    from scipy.signal import lfilter

    return lfilter([1.0], [1.0, -0.9], rng.standard_normal(n)) * 0.02


def voice(n):
    """Harmonic bursts with a gliding pitch, silent outside BURSTS."""
    t = np.arange(n) / SR
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    y = sum(np.sin(k * phase) / k for k in range(1, 12))
    gate = np.zeros(n)
    for a, b in BURSTS:
        gate[(t >= a) & (t < b)] = np.hanning(np.count_nonzero((t >= a) & (t < b)))
    return 0.25 * y * gate


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(7)
    n = int(6 * SR)
    speech, noise = voice(n), coloured_noise(n, rng)
    sample = coloured_noise(2 * SR, rng)  # the same noise, recorded elsewhere
    return speech, noise, speech + noise, sample


def corr(a, b):
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


def test_clean_and_noise_sum_to_the_input(scene):
    speech, noise, mix, sample = scene
    clean, removed = denoise(mix.astype(np.float32), SR)
    assert clean.dtype == removed.dtype == np.float32 and clean.shape == mix.shape
    np.testing.assert_allclose(clean + removed, mix.astype(np.float32), atol=1e-6)
    sources = separate(mix, SR, two_stems="noise")
    assert list(sources) == ["clean", "noise"]


def test_with_a_noise_sample_the_estimates_follow_the_truth(scene):
    speech, noise, mix, sample = scene
    clean, removed = denoise(mix, SR, noise=sample)
    assert corr(removed, noise) > 0.8
    assert corr(clean, speech) > 0.8
    assert corr(clean, speech) > corr(mix, speech)


def test_the_noise_floor_quiets_the_pauses_and_keeps_the_voice(scene):
    """What stands under the floor (the noise's own level, times the mode's floor_scale)
    goes to noise: less of it is left in the noise-only lead-in, the voice stays."""
    speech, noise, mix, sample = scene
    lead_in = slice(0, int(LEAD_IN * SR) - 1000)

    def clean(floor_scale):
        mode = configure(SR, {"two_stems": "noise", "noise": sample})
        assert mode.floor_scale == 3.0  # the default: NOISE_FLOOR_SCALE
        mode.floor_scale = floor_scale
        pieces = []
        _blocks.run(Signal(mix, SR), mode, lambda index, samples: index or pieces.append(samples[0]))
        return np.concatenate(pieces)

    with_floor = clean(3.0)
    without = clean(0.0)
    assert np.sum(with_floor[lead_in] ** 2) < 0.7 * np.sum(without[lead_in] ** 2)
    assert corr(with_floor, speech) > 0.8


def test_a_noise_sample_at_another_rate_is_resampled(scene, tmp_path):
    speech, noise, mix, sample = scene
    from audionmf.io import resample

    path = tmp_path / "noise.wav"
    sf.write(path, resample(sample, SR, 2 * SR), 2 * SR, subtype="FLOAT")
    from_file = denoise(mix, SR, noise=str(path))[1]
    from_array = denoise(mix, SR, noise=resample(sample, SR, 2 * SR), noise_sr=2 * SR)[1]
    assert corr(from_file, noise) > 0.8
    assert corr(from_file, from_array) > 0.999


def test_reduction_leaves_that_much_of_the_noise_in_clean(scene):
    speech, noise, mix, sample = scene
    clean, removed = denoise(mix, SR, noise=sample)
    clean12, removed12 = denoise(mix, SR, noise=sample, reduction=12)
    np.testing.assert_allclose(clean12 + removed12, mix, atol=1e-9)
    left = clean12 - clean  # the noise estimate kept in clean
    level = 10 * np.log10(np.sum(left**2) / np.sum(removed**2))
    assert level == pytest.approx(-12.0, abs=0.2)
    assert corr(left, removed) > 0.99


def test_the_automatic_profile_finds_the_noise_alone(scene):
    speech, noise, mix, sample = scene
    n_fft = denoise_n_fft(SR)
    hop = n_fft // 4
    frames = quiet_frames(np.abs(stft(mix, n_fft=n_fft, hop_length=hop)), int(0.25 * SR / hop))
    times = frames * hop / SR
    in_speech = [any(a + 0.1 < t < b - 0.1 for a, b in BURSTS) for t in times]
    assert np.mean(in_speech) < 0.05
    assert np.any(times < LEAD_IN)
    clean, removed = denoise(mix, SR)
    assert corr(removed, noise) > 0.7
    lead = slice(0, int(0.8 * SR))
    assert np.sum(clean[lead] ** 2) < 0.2 * np.sum(mix[lead] ** 2)


def test_no_noise_only_stretch_says_so_and_what_to_pass(scene):
    rng = np.random.default_rng(1)
    t = np.arange(4 * SR) / SR
    steady = 0.1 * np.sin(2 * np.pi * 200 * t) + coloured_noise(len(t), rng)
    with pytest.raises(ParameterError, match=r"no noise-only stretch.*noise .*noise_from"):
        denoise(steady, SR)
    denoise(steady, SR, noise_from=(0, 1))  # with a profile, it runs


def test_a_clean_recording_with_silent_pauses_is_not_stripped_of_its_voice():
    # Pauses of digital silence: there is no noise to learn, and the quietest frames
    # left are the voice's own onsets, which must not become the noise profile.
    t = np.arange(4 * SR) / SR
    voice = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 10))
    voice *= 0.3 * (((t % 1.0) > 0.4) & (t > 1))
    with pytest.raises(ParameterError, match=r"no noise-only stretch.*digital silence"):
        denoise(voice, SR)
    quiet = voice + 1e-4 * np.random.default_rng(0).standard_normal(len(t))  # noise at -70 dB
    clean, _ = denoise(quiet, SR)
    assert np.sum(clean**2) > 0.8 * np.sum(quiet**2)


@pytest.mark.parametrize("span, message", [
    ((2, 1), "not a stretch"), ((-1, 1), "not a stretch"), ("a:b", "START:END"),
    ((5, 9), "past the end"), ((1, 1.01), "shorter than one STFT frame"),
])
def test_bad_noise_spans_are_refused(scene, span, message):
    mix = scene[2]
    with pytest.raises(ParameterError, match=message):
        denoise(mix, SR, noise_from=span)


def test_a_span_just_past_the_end_gives_the_exact_length(scene):
    """0:0.3 on a 0.2995 s input: its length is not rounded up to the span asked for."""
    with pytest.raises(ParameterError, match=r"0:0.3 reaches past the end of the input \(0.2995 s\)"):
        denoise(scene[2][:2396], SR, noise_from=(0, 0.3))


def test_other_bad_options_are_refused(scene, tmp_path):
    speech, noise, mix, sample = scene
    with pytest.raises(ParameterError, match="cannot be used together"):
        denoise(mix, SR, noise=sample, noise_from=(0, 1))
    with pytest.raises(ParameterError, match="positive number of dB"):
        denoise(mix, SR, reduction=0)
    with pytest.raises(ParameterError, match=r"stationary='no': expected True or False"):
        denoise(mix, SR, stationary="no")
    with pytest.raises(AudioError, match="missing.wav"):
        denoise(mix, SR, noise=str(tmp_path / "missing.wav"))
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....WAVEfmt nonsense")
    with pytest.raises(AudioError, match="corrupt.wav"):
        denoise(mix, SR, noise=str(corrupt))
    with pytest.raises(AudioError, match="silent"):
        denoise(mix, SR, noise=np.zeros(SR))
    with pytest.raises(ParameterError, match="NaN"):
        denoise(mix, SR, noise=np.full(SR, np.nan))
    with pytest.raises(ParameterError, match="n_sources"):
        separate(mix, SR, two_stems="noise", n_sources=3)


def test_separate_file_never_overwrites_the_noise_sample(scene, tmp_path):
    """The noise sample is an input too: in the output folder, named as an output."""
    folder = tmp_path / "talk"
    folder.mkdir()
    path, sample = tmp_path / "talk.wav", folder / "noise.wav"
    sf.write(path, scene[2], SR)
    sf.write(sample, scene[3], SR)
    before = sample.read_bytes()
    with pytest.raises(AudioError, match="noise.wav is the noise file; choose another folder"):
        separate_file(path, folder, two_stems="noise", noise=str(sample))
    assert sample.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["noise.wav"]


def test_a_noise_sample_the_frames_hear_nothing_of_is_silent(scene):
    """Not digital silence, but nothing for the spectrogram: a click where every frame's
    window is 0, or samples too faint for single precision ('V is all zeros' before)."""
    click = np.zeros(SR)
    click[0] = 0.5
    faint = scene[3] * 1e-310
    for noise in (click, faint):
        with pytest.raises(AudioError, match="the noise sample: silent: it holds no noise"):
            denoise(scene[2], SR, noise=noise)
    with pytest.raises(ParameterError, match="noise_from 0:1 is silent"):
        denoise(np.concatenate([click, scene[2]]), SR, noise_from=(0, 1))


def test_long_input_goes_through_blocks(scene):
    speech, noise, mix, sample = scene
    n_freq = denoise_n_fft(SR) // 2 + 1
    limits = Limits(fit_values=n_freq * 120, block_values=n_freq * 40, excerpt_frames=40)
    clean, removed = denoise(mix, SR, noise=sample, limits=limits)
    np.testing.assert_allclose(clean + removed, mix, atol=1e-9)
    assert corr(removed, noise) > 0.75
    clean_auto, removed_auto = denoise(mix, SR, limits=limits)
    assert np.all(np.isfinite(clean_auto)) and corr(removed_auto, noise) > 0.6


def test_parse_span():
    assert parse_span("0:1.5") == (0.0, 1.5)
    assert parse_span((1, 2)) == (1.0, 2.0)


def test_cli_writes_clean_and_noise(scene, tmp_path, capsys):
    speech, noise, mix, sample = scene
    path, noise_path = tmp_path / "talk.wav", tmp_path / "room.wav"
    sf.write(path, mix, SR, subtype="FLOAT")
    sf.write(noise_path, sample, SR)
    out = tmp_path / "out"
    assert main(["denoise", str(path), "-o", str(out), "-q", "--noise-sample", str(noise_path),
                 "--reduction", "12", "--stationary"]) == 0
    clean, _ = sf.read(out / "talk" / "clean.wav")
    removed, _ = sf.read(out / "talk" / "noise.wav")
    np.testing.assert_allclose(clean + removed, mix, atol=1e-6)
    assert main(["denoise", str(path), "-o", str(out), "--skip-existing"]) == 0
    assert "already separated" in capsys.readouterr().err


@pytest.mark.parametrize("args, code, message", [
    (["--noise-from", "3:2"], 2, "--noise-from: 3:2 is not a stretch"),
    (["--noise-from", "0:99"], 1, "--noise-from 0:99 reaches past the end"),
    (["--noise-sample", "nowhere.wav"], 1, "nowhere.wav"),
    (["--reduction", "0"], 2, "--reduction"),
    (["--noise-sample", "x.wav", "--noise-from", "0:1"], 2, "cannot be used together"),
    (["--sources", "3"], 2, "unrecognized"),
])
def test_cli_errors_are_one_line(scene, tmp_path, capsys, args, code, message):
    path = tmp_path / "talk.wav"
    sf.write(path, scene[2], SR)
    assert main(["denoise", str(path), "-o", str(tmp_path / "out"), "-q", *args]) == code
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out" / "talk").exists()


def test_cli_says_when_no_noise_only_stretch(tmp_path, capsys):
    rng = np.random.default_rng(1)
    t = np.arange(3 * SR) / SR
    path = tmp_path / "steady.wav"
    sf.write(path, 0.1 * np.sin(2 * np.pi * 200 * t) + coloured_noise(len(t), rng), SR)
    assert main(["denoise", str(path), "-o", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert "no noise-only stretch" in err and "--noise-sample" in err and "--noise-from" in err
    assert len(err.splitlines()) == 1


def test_cli_bad_inputs_fail_alone(scene, tmp_path, capsys):
    good, silent, text = tmp_path / "good.wav", tmp_path / "silent.wav", tmp_path / "text.wav"
    sf.write(good, scene[2], SR)
    sf.write(silent, np.zeros(2 * SR), SR)
    text.write_text("not audio")
    out = tmp_path / "out"
    code = main(["denoise", str(silent), str(text), str(good), str(tmp_path / "missing.wav"),
                 "-o", str(out), "-q"])
    assert code == 1
    err = capsys.readouterr().err
    for name in ("silent.wav", "text.wav", "missing.wav"):
        assert sum(name in line for line in err.splitlines()) >= 1
    assert "Traceback" not in err
    assert sorted(p.name for p in (out / "good").iterdir()) == ["clean.wav", "noise.wav"]
    assert not (out / "silent").exists() and not (out / "text").exists()
    assert sf.read(good)[0].shape == scene[2].shape  # the input is untouched


@pytest.mark.parametrize("command", [["denoise"], ["separate", "--two-stems", "noise"]])
def test_cli_a_bad_noise_sample_is_one_line_for_the_batch(scene, tmp_path, capsys, command):
    talks = [tmp_path / "a.wav", tmp_path / "b.wav"]
    for path in talks:
        sf.write(path, scene[2], SR)
    silent = tmp_path / "room.wav"
    sf.write(silent, np.zeros(SR), SR)
    assert main([*command, *map(str, talks), "-o", str(tmp_path / "out"), "-q",
                 "--noise-sample", str(silent)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "room.wav: silent" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_speech_model_replaces_the_speech_templates(scene, tmp_path):
    from audionmf import SourceModel

    speech, noise, mix, sample = scene
    model = SourceModel.learn([voice(4 * SR)[::-1].copy()], SR, name="speech", n_components=12,
                              context=1, max_iter=30, semitones=(0,), random_state=0)
    clean, removed = denoise(mix, SR, noise=sample, model=model)
    np.testing.assert_allclose(clean + removed, mix, atol=1e-9)
    assert corr(removed, noise) > 0.7
    path = tmp_path / "speech.npz"
    model.save(path)
    talk = tmp_path / "talk.wav"
    sf.write(talk, mix, SR, subtype="FLOAT")
    assert main(["denoise", str(talk), "-o", str(tmp_path / "out"), "-q", "--model", str(path),
                 "--noise-from", "0:0.9"]) == 0


def test_denoise_options_need_the_mode(scene, capsys):
    with pytest.raises(ParameterError, match=r"reduction needs two_stems='noise'"):
        separate(scene[2], SR, reduction=12)
    assert main(["separate", "x.wav", "--stationary"]) == 2
    assert "--stationary needs --two-stems noise" in capsys.readouterr().err
