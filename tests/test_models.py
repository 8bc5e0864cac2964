import zipfile

import numpy as np
import pytest
import soundfile as sf

from audionmf import ModelError, ParameterError, SourceModel, separate
from audionmf.models import LEARN_DEFAULTS
from audionmf.cli import main

from conftest import gated, rel_error, separate_without_vote, tone

SR = 8000
N_FFT = 512


def low_voice(seconds=3.0, offset=0.0):
    """A source of low harmonic tones that change pitch."""
    parts = [tone(f, SR, seconds / 3, (1, 0.6, 0.3)) for f in (196, 220, 247)]
    return 0.3 * gated(np.concatenate(parts), SR, period=0.5, duty=0.7, offset=offset)


def high_voice(seconds=3.0, offset=0.0):
    parts = [tone(f, SR, seconds / 3, (1, 0.2)) for f in (1319, 1480, 1568)]
    return 0.3 * gated(np.concatenate(parts), SR, period=0.3, duty=0.6, offset=offset)


@pytest.fixture(scope="module")
def models():
    kw = dict(n_components=8, n_fft=N_FFT, context=0, random_state=0)
    return SourceModel.learn(low_voice(), SR, name="low", **kw), SourceModel.learn(high_voice(), SR, name="high", **kw)


def test_learned_model_describes_its_analysis(models):
    low, _ = models
    assert low.templates.shape == (N_FFT // 2 + 1, 8 * LEARN_DEFAULTS["fits"])
    np.testing.assert_allclose(low.templates.sum(axis=0), 1.0, rtol=1e-5)
    assert (low.sr, low.n_fft, low.hop_length, low.beta, low.power) == (SR, N_FFT, N_FFT // 4, 1.0, 1.0)
    # The templates sit where the source has energy: below 1 kHz for the low voice.
    freqs = np.arange(N_FFT // 2 + 1) * SR / N_FFT
    assert low.templates[freqs < 1000].sum() > 0.95 * low.templates.sum()


def test_supervised_separation_recovers_the_sources(models):
    # Different notes' timing than in training, same instruments.
    a, b = low_voice(offset=0.13), high_voice(offset=0.07)
    sources = separate(a + b, SR, models=list(models))
    assert list(sources) == ["low", "high"]
    assert rel_error(sources["low"], a) < 0.1
    assert rel_error(sources["high"], b) < 0.1
    np.testing.assert_allclose(sources["low"] + sources["high"], a + b, atol=1e-10)


def test_free_components_take_what_no_model_explains():
    # Learned from the examples as they are: 8 templates for three exact pitches
    # (with shifted copies they blur, and the free components take the rest).
    low = SourceModel.learn(low_voice(), SR, name="low", n_components=8, n_fft=N_FFT, context=0,
                            semitones=(0,), random_state=0)
    a, b = low_voice(offset=0.1), high_voice()
    sources = separate(a + b, SR, models=[low], free_components=4, random_state=0)
    assert list(sources) == ["low", "residual"]
    assert rel_error(sources["low"], a) < 0.15
    assert rel_error(sources["residual"], b) < 0.15


def test_templates_learned_on_the_mixture_take_plain_steps(monkeypatch):
    """The free templates beside models, like the blind fit, are fitted with plain
    multiplicative steps (MIXTURE_OVER_RELAXATION); activations of fixed models are
    not, nor is the finer fit that refines the grouping of sustained notes."""
    import sys

    from audionmf.modes.blind import MIXTURE_OVER_RELAXATION

    seen, real_nmf = [], sys.modules["audionmf.modes.base"].nmf

    def spy(V, K, **options):
        seen.append((K, options.get("update_W", True), options.get("over_relaxation")))
        return real_nmf(V, K, **options)

    for module in ("base", "blind", "supervised"):  # every fit of the modes
        monkeypatch.setattr(sys.modules[f"audionmf.modes.{module}"], "nmf", spy)
    low = SourceModel.learn(low_voice(), SR, name="low", n_components=8, n_fft=N_FFT, context=0,
                            semitones=(0,), random_state=0, fits=1)
    y = low_voice(offset=0.1) + high_voice()
    separate(y, SR, models=[low], free_components=4, random_state=0)
    separate(y, SR, n_sources=2, n_fft=N_FFT, random_state=0)
    separate(y, SR, models=[low], random_state=0)
    learned = [(K, relax) for K, update, relax in seen if update is not False]
    assert learned == [(12, 1.0), (16, 1.0), (32, None)] and MIXTURE_OVER_RELAXATION == 1.0
    assert [relax for _, update, relax in seen if update is False] == [None]  # the engine's default


def test_mixture_at_another_rate(models):
    import librosa

    a, b = low_voice(offset=0.1), high_voice()
    y16 = librosa.resample(a + b, orig_sr=SR, target_sr=16000)
    sources = separate(y16, 16000, models=list(models))
    assert all(s.shape == y16.shape for s in sources.values())
    np.testing.assert_allclose(sum(sources.values()), y16, atol=1e-10)
    back = {k: librosa.resample(v, orig_sr=16000, target_sr=SR) for k, v in sources.items()}
    n = min(len(a), len(back["low"]))
    assert rel_error(back["low"][:n], a[:n]) < 0.15
    assert rel_error(back["high"][:n], b[:n]) < 0.15


def test_save_load_round_trip(tmp_path, models):
    low, _ = models
    path = tmp_path / "low.npz"
    low.save(path)
    back = SourceModel.load(path)
    np.testing.assert_array_equal(back.templates, low.templates)
    for field in ("name", "sr", "n_fft", "hop_length", "window", "beta", "power", "context"):
        assert getattr(back, field) == getattr(low, field)
    assert [p.name for p in tmp_path.iterdir()] == ["low.npz"]


def _write_npz(path, **arrays):
    np.savez(path, **arrays)


def valid_fields(model):
    return dict(kind=np.str_("audionmf.SourceModel"), format_version=np.int64(1), name=np.str_(model.name),
                templates=model.templates, sr=np.int64(model.sr), n_fft=np.int64(model.n_fft),
                hop_length=np.int64(model.hop_length), window=np.str_(model.window),
                beta=np.float64(model.beta), power=np.float64(model.power), context=np.int64(model.context))


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda f: f.pop("kind"), "not an audionmf model file"),
        (lambda f: f.update(kind=np.str_("something else")), "not an audionmf model file"),
        (lambda f: f.pop("templates"), "lacks templates"),
        (lambda f: f.update(format_version=np.int64(99)), "newer than this audionmf reads"),
        (lambda f: f.update(templates=-f["templates"]), "non-negative"),
        (lambda f: f.update(templates=f["templates"][:100]), "templates have shape"),
        (lambda f: f.update(templates=np.full((257, 2), np.nan)), "finite"),
        (lambda f: f.update(n_fft=np.int64(-4)), "n_fft"),
        (lambda f: f.update(power=np.float64(4)), "power=4.0: must be at most 2"),
        (lambda f: f.update(window=np.str_("bogus")), "window='bogus'"),
        (lambda f: f.update(templates=np.hstack([f["templates"], 0 * f["templates"][:, :1]])),
         r"template \d+ of \d+ is all zeros"),
        (lambda f: f.update(sr=np.array([1, 2])), "scalars"),
        (lambda f: f.update(format_version=np.array([1, 2])), "not a readable model file"),
        (lambda f: f.update(templates=np.array(["a", "b"])), "templates"),
        # names no output file can take (once written by releases that let them through)
        (lambda f: f.update(name=np.str_("lead\tvocal")), "m.npz: inconsistent model: name='lead..vocal': must "
         "be usable as a file name: no control characters.* \\(learn it again under another name\\)"),
        (lambda f: f.update(name=np.str_("m" * 201)), "at most 200 bytes.*learn it again"),
    ],
)
def test_bad_model_files_are_refused(tmp_path, models, change, match):
    fields = valid_fields(models[0])
    change(fields)
    path = tmp_path / "m.npz"
    _write_npz(path, **fields)
    with pytest.raises(ModelError, match=match):
        SourceModel.load(path)


def test_pickled_and_corrupt_files_are_refused(tmp_path):
    pickled = tmp_path / "p.npz"
    np.savez(pickled, kind=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ModelError, match="p.npz"):
        SourceModel.load(pickled)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ModelError, match="junk.npz: not a readable model file"):
        SourceModel.load(junk)
    with pytest.raises(ModelError, match="no such file"):
        SourceModel.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "AIFF"])
def test_audio_file_given_as_a_model_is_named_so(tmp_path, fmt):
    path = tmp_path / "speech.npz"  # (what it is called does not matter)
    sf.write(path, low_voice(0.1), SR, format=fmt)
    with pytest.raises(ModelError, match="speech.npz: an audio file, not a model"):
        SourceModel.load(path)


def test_model_file_that_unpacks_huge_is_refused(tmp_path, monkeypatch):
    import audionmf.models

    path = tmp_path / "big.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("templates.npy", b"\0" * 2_000_000)
    monkeypatch.setattr(audionmf.models, "MAX_MODEL_BYTES", 1_000_000)
    with pytest.raises(ModelError, match="more than a model needs"):
        SourceModel.load(path)


def test_incompatible_models_are_refused(models):
    low, high = models
    other = SourceModel.learn(high_voice(), SR, name="other", n_components=4, n_fft=256, context=0)
    with pytest.raises(ParameterError, match="n_fft differs"):
        separate(low_voice(), SR, models=[low, other])
    with pytest.raises(ParameterError, match="unique"):
        separate(low_voice(), SR, models=[low, low])
    with pytest.raises(ParameterError, match="n_fft=1024 differs"):
        separate(low_voice(), SR, models=[low, high], n_fft=1024)
    with pytest.raises(ParameterError, match="free_components needs models"):
        separate(low_voice(), SR, free_components=3)
    for weight in (0, 5.0):  # the models group the components: no weight is used
        with pytest.raises(ParameterError, match="rhythm_weight cannot be used with models"):
            separate(low_voice(), SR, models=[low, high], rhythm_weight=weight)
    # the models decide the sources (n_sources=3 was silently ignored), as the CLI says
    with pytest.raises(ParameterError, match="n_sources cannot be used with models"):
        separate(low_voice(), SR, models=[low, high], n_sources=3)
    with pytest.raises(ParameterError, match="n_components cannot be used with models"):
        separate(low_voice(), SR, models=[low, high], n_components=40)


def test_learning_ignores_silence():
    quiet = 1e-4 * np.random.default_rng(0).standard_normal(SR)  # -80 dB: below the cut
    a = SourceModel.learn([low_voice(), np.zeros(SR), quiet], SR, name="a", n_components=4,
                          n_fft=N_FFT, random_state=0)
    b = SourceModel.learn(low_voice(), SR, name="b", n_components=4, n_fft=N_FFT, random_state=0)
    assert a.context == 2  # the default: stacking stays within each example
    np.testing.assert_array_equal(a.templates, b.templates)


def test_learning_refuses_bad_examples():
    with pytest.raises(ParameterError, match="silent"):
        SourceModel.learn(np.zeros(SR), SR, name="x", n_fft=N_FFT)
    with pytest.raises(ParameterError, match="too short"):
        SourceModel.learn(np.ones(100), SR, name="x", n_fft=N_FFT)
    with pytest.raises(ParameterError, match="sr is needed"):
        SourceModel.learn(np.ones(SR), name="x")
    with pytest.raises(ParameterError, match="file name"):
        SourceModel.learn(low_voice(), SR, name="a/b", n_fft=N_FFT)
    with pytest.raises(ParameterError, match="not a hidden one"):  # its output would be .x.wav
        SourceModel.learn(low_voice(), SR, name=".x", n_fft=N_FFT)
    with pytest.raises(ParameterError, match="'residual' is reserved"):  # no separation could use it
        SourceModel.learn(low_voice(), SR, name="residual", n_fft=N_FFT)
    for name in ("a\nb", "a\tb", "a\u2028b", "caf\udce9"):  # a newline, a tab, a line separator, not UTF-8
        with pytest.raises(ParameterError, match="no control characters"):
            SourceModel.learn(low_voice(), SR, name=name, n_fft=N_FFT)
    for name in ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0646\u062f", "voz\u00a0principal"):
        SourceModel.learn(low_voice(), SR, name=name, n_fft=N_FFT, n_components=2, max_iter=1)  # ZWNJ, NBSP
    with pytest.raises(ParameterError, match="at most 200 bytes"):  # its file could not be written
        SourceModel.learn(low_voice(), SR, name="\u00e9" * 101, n_fft=N_FFT)
    SourceModel.learn(low_voice(), SR, name="\u00e9" * 100, n_fft=N_FFT, n_components=2, max_iter=1)
    with pytest.raises(ParameterError, match="power=2.5: must be at most 2"):
        SourceModel.learn(low_voice(), SR, name="x", n_fft=N_FFT, power=2.5)



@pytest.mark.parametrize("level", [1e300, 1e-300])
def test_learning_does_not_depend_on_the_level(level):
    # Power spectrograms of examples at +6000 dB overflowed to Inf (a raw "V contains NaN
    # or Inf"), those at -6000 dB underflowed to "silent".
    kw = dict(n_components=3, n_fft=N_FFT, context=0, power=2, max_iter=5, semitones=(0,),
              random_state=0)
    y = low_voice(1.0)
    np.testing.assert_array_equal(SourceModel.learn(y * level, SR, name="a", **kw).templates,
                                  SourceModel.learn(y, SR, name="a", **kw).templates)


def test_silent_examples_are_named(tmp_path):
    path = tmp_path / "quiet.wav"
    sf.write(path, np.zeros(SR), SR)
    with pytest.raises(ParameterError, match=r"quiet.wav: silent: the examples of 'x' hold no sound"):
        SourceModel.learn([str(path), np.zeros(SR)], SR, name="x", n_fft=N_FFT)


# ------------------------------------------------------------------ command line
@pytest.fixture
def example_files(tmp_path):
    folder = tmp_path / "examples"
    folder.mkdir()
    sf.write(folder / "low1.wav", low_voice(), SR)
    sf.write(folder / "low2.wav", low_voice(offset=0.2)[: 2 * SR], SR)
    sf.write(folder / "high.wav", high_voice(), SR)
    sf.write(folder / "mix.wav", low_voice(offset=0.1) + high_voice(offset=0.05), SR, subtype="FLOAT")
    return folder


def test_cli_learn_then_separate(tmp_path, example_files):
    low = tmp_path / "low.npz"
    high = tmp_path / "high.npz"
    common = ["--components", "8", "--n-fft", str(N_FFT), "--context", "1", "-q"]
    assert main(["learn", "low", str(example_files / "low1.wav"), str(example_files / "low2.wav"),
                 "-o", str(low), *common]) == 0
    assert main(["learn", "high", str(example_files / "high.wav"), "-o", str(high), *common,
                 "--fits", "1"]) == 0  # beside a model of two fits: it lends its templates to both
    assert SourceModel.load(low).name == "low" and SourceModel.load(low).context == 1
    assert (SourceModel.load(low).fits, SourceModel.load(high).fits) == (LEARN_DEFAULTS["fits"], 1)
    out = tmp_path / "out"
    assert main(["separate", str(example_files / "mix.wav"), "--model", str(low), "--model", str(high),
                 "-o", str(out), "-q"]) == 0
    mix, _ = sf.read(example_files / "mix.wav")
    parts = {name: sf.read(out / "mix" / f"{name}.wav")[0] for name in ("low", "high")}
    np.testing.assert_allclose(parts["low"] + parts["high"], mix, atol=1e-6)
    assert rel_error(parts["low"], low_voice(offset=0.1)) < 0.1
    out2 = tmp_path / "out2"
    assert main(["separate", str(example_files / "mix.wav"), "--model", str(low), "--free", "4",
                 "-o", str(out2), "-q"]) == 0
    assert sorted(p.name for p in (out2 / "mix").iterdir()) == ["low.wav", "residual.wav"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["separate", "x.wav", "--model", "m.npz", "--sources", "3"], "--sources cannot be used with --model"),
        (["separate", "x.wav", "--model", "m.npz", "--n-fft", "512"], "--n-fft cannot be used with --model"),
        (["separate", "x.wav", "--free", "3"], "--free needs --model"),
        (["learn", "x", "a.wav", "-o", "x.txt"], "model files end in .npz"),
        (["learn", "x", "a.wav"], "required: -o"),
        (["learn", "", "a.wav", "-o", "m.npz"], "NAME: name='': a model needs a non-empty name"),
        (["learn", "../x", "a.wav", "-o", "m.npz"], "NAME: name='../x': must be usable as a file name"),
        (["learn", "a\nb", "a.wav", "-o", "m.npz"], "no control characters"),
        # an empty model file name failed as an "internal error", or was ignored by decompose
        (["separate", "x.wav", "--model", ""], "argument --model: expected a file name, got ''"),
        (["separate", "x.wav", "--two-stems", "noise", "--speech-model", ""], "--speech-model: expected"),
        (["decompose", "x.wav", "--model", "", "-o", "f.npz"], "argument --model: expected a file name"),
    ],
)
def test_cli_model_usage_errors(capsys, args, expected):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]


def test_cli_bad_model_file_is_refused_before_work(tmp_path, example_files, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"nope")
    out = tmp_path / "out"
    assert main(["separate", str(example_files / "mix.wav"), "--model", str(bad), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.npz: not a readable model file" in err[0]
    assert not out.exists()


def test_cli_learn_bad_example(tmp_path, example_files, capsys):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"junk" * 100)
    model = tmp_path / "m.npz"
    assert main(["learn", "x", str(example_files / "low1.wav"), str(junk), "-o", str(model)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "junk.wav: not a readable audio file" in err[0]
    assert not model.exists()


def test_models_with_temporal_context(tmp_path):
    kw = dict(n_components=8, n_fft=N_FFT, context=2, random_state=0, fits=1)
    low = SourceModel.learn(low_voice(), SR, name="low", **kw)
    high = SourceModel.learn(high_voice(), SR, name="high", **kw)
    assert low.templates.shape == (5 * (N_FFT // 2 + 1), 8)
    low.save(tmp_path / "low.npz")
    assert SourceModel.load(tmp_path / "low.npz").context == 2
    a, b = low_voice(offset=0.13), high_voice(offset=0.07)
    sources = separate(a + b, SR, models=[low, high])
    assert rel_error(sources["low"], a) < 0.1 and rel_error(sources["high"], b) < 0.1
    np.testing.assert_allclose(sources["low"] + sources["high"], a + b, atol=1e-10)
    flat = SourceModel.learn(high_voice(), SR, name="flat", n_components=8, n_fft=N_FFT, context=0)
    with pytest.raises(ParameterError, match="context differs"):
        separate(a + b, SR, models=[low, flat])


def test_learn_output_folder_must_exist(tmp_path, example_files, capsys):
    out = tmp_path / "missing" / "m.npz"
    assert main(["learn", "x", str(example_files / "low1.wav"), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]


def test_learn_replaces_an_existing_model_only_when_done(tmp_path, example_files, capsys):
    out = tmp_path / "m.npz"
    out.write_bytes(b"old")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(SR), SR)
    assert main(["learn", "x", str(silent), "-o", str(out), "--n-fft", str(N_FFT)]) == 1
    assert "silent.wav: silent" in capsys.readouterr().err
    assert out.read_bytes() == b"old"  # a failure leaves the old file as it was
    assert main(["learn", "x", str(example_files / "low1.wav"), "-o", str(out), "-q", "--n-fft",
                 str(N_FFT), "--components", "2", "--iterations", "2", "--fits", "1"]) == 0
    assert SourceModel.load(out).name == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["examples", "m.npz", "silent.wav"]
    # an example given as the output is refused, never overwritten
    example = tmp_path / "ex.npz"
    example.write_bytes((example_files / "low1.wav").read_bytes())
    assert main(["learn", "x", str(example), "-o", str(example)]) == 1
    assert "is the input" in capsys.readouterr().err
    assert example.read_bytes() == (example_files / "low1.wav").read_bytes()


def test_pitch_shifted_examples():
    from audionmf.models import _shifted

    S = np.zeros((513, 3))
    S[100] = 1.0
    octave, = _shifted([S], 12)  # bin f reads f / 2: the peak moves to 200 and widens
    expected = np.zeros(513)
    expected[[199, 200, 201]] = [0.5, 1.0, 0.5]
    np.testing.assert_allclose(octave[:, 0], expected, atol=1e-12)
    up, = _shifted([S], 1)
    ratio = 2 ** (1 / 12)  # bin f reads f / ratio, between bins: 105 and 106 read near 100
    assert up[106, 0] == pytest.approx(1 - (106 / ratio - 100))
    assert up[105, 0] == pytest.approx(105 / ratio - 99)
    assert up[:, 0].argmax() == 106 and np.count_nonzero(up[:, 0]) == 3  # 107 reads 100.99
    down, = _shifted([S], -1)
    assert down[:, 0].argmax() == round(100 * 2 ** (-1 / 12))
    with pytest.raises(ParameterError, match="between -24 and 24"):
        SourceModel.learn(low_voice(), SR, name="low", semitones=(30,))


def test_shifted_examples_cover_transposed_notes():
    def transposed(voice_freqs, harmonics, seconds, period, duty, offset, k):
        parts = [tone(f * 2 ** (k / 12), SR, seconds / 3, harmonics) for f in voice_freqs]
        return 0.3 * gated(np.concatenate(parts), SR, period=period, duty=duty, offset=offset)

    errors = {}
    for semitones in ((0,), (-1, 0, 1)):
        kw = dict(n_components=8, n_fft=N_FFT, context=0, random_state=0, semitones=semitones)
        low = SourceModel.learn(low_voice(), SR, name="low", **kw)
        high = SourceModel.learn(high_voice(), SR, name="high", **kw)
        a = transposed((196, 220, 247), (1, 0.6, 0.3), 3.0, 0.5, 0.7, 0.1, 1)  # a semitone up
        b = transposed((1319, 1480, 1568), (1, 0.2), 3.0, 0.3, 0.6, 0.0, 1)
        sources = separate_without_vote(a + b, SR, [low, high])  # what the templates cover
        errors[semitones] = rel_error(sources["low"], a) + rel_error(sources["high"], b)
    assert errors[(-1, 0, 1)] < errors[(0,)] < 0.05


@pytest.mark.parametrize("call, keyword", [
    (lambda y: separate(y, 8000, models=["speech.npz"]), "models"),
    (lambda y: separate(y, 8000, two_stems="noise", noise_from=(0, 0.5), speech_models=[3]), "speech_models"),
])
def test_models_that_are_not_source_models_are_refused_by_name(call, keyword):
    y = np.random.default_rng(0).standard_normal(8000)
    with pytest.raises(ParameterError, match=rf"^{keyword} must be SourceModel objects, got (str|int)$"):
        call(y)


def test_odd_arguments_of_models_are_refused_by_name(models, tmp_path):
    # Each was a raw TypeError or ValueError.
    low, _ = models
    y = low_voice(0.5)
    with pytest.raises(ParameterError, match="^models must be a list of SourceModel objects, got one SourceModel"):
        separate(y, SR, models=low)
    with pytest.raises(ParameterError, match="^speech_models must be a list of SourceModel objects"):
        separate(y, SR, two_stems="noise", noise_from=(0, 0.2), speech_models=low)
    for options in ({"models": [low]}, {}):
        with pytest.raises(ParameterError, match=r"^window=array\(\[1\., .*: expected a window name$"):
            separate(y, SR, window=np.ones(N_FFT), **options)
    for path in (None, 3):
        with pytest.raises(ParameterError, match="expected a file name"):
            low.save(path)
    low.save(bytes(tmp_path / "low.npz"))
    assert SourceModel.load(tmp_path / "low.npz").name == "low"


@pytest.mark.parametrize("scale", [1e-9, 1e30])
def test_templates_of_any_scale_separate_alike(models, scale):
    # Hand-made templates far from a sum of 1 were clipped by the fit: the model lost
    # everything to the other one (1e-9), or took everything (1e30).
    low, high = models
    fields = {f: getattr(low, f) for f in ("name", "sr", "n_fft", "hop_length", "context", "fits")}
    scaled = SourceModel(templates=low.templates.astype(np.float64) * scale, **fields)
    np.testing.assert_allclose(scaled.templates.sum(axis=0), 1.0, rtol=1e-5)
    y = low_voice(1.0) + high_voice(1.0)
    expected = separate(y, SR, models=[low, high], random_state=0)
    np.testing.assert_allclose(separate(y, SR, models=[scaled, high], random_state=0)["low"],
                               expected["low"], atol=1e-5)
