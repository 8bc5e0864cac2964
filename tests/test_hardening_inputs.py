"""Hardening of the inputs (issue #26): models, STFT settings, evaluation, arrays, streams.

Each test here failed before its fix; the table at the end walks the Python API's
arguments at their bounds, just past them and absurd.
"""
import os
import threading
import zipfile

import numpy as np
import pytest

from audionmf import ModelError, ParameterError, SourceModel

SR = 8000
N_FFT = 256


def small_model(**change):
    fields = dict(name="low", templates=np.ones((N_FFT // 2 + 1, 2), np.float32), sr=SR, n_fft=N_FFT,
                  hop_length=N_FFT // 4, context=0)
    fields.update(change)
    return SourceModel(**fields)


# ----------------------------------------------------------------- point 2: model paths
@pytest.mark.parametrize("kind", ["device", "fifo", "folder"])
def test_a_model_path_that_is_not_a_regular_file_is_refused_before_reading(tmp_path, kind):
    if kind == "device":
        path = "/dev/zero"
    elif kind == "fifo":
        path = str(tmp_path / "model.npz")
        os.mkfifo(path)  # no writer: opening it to read would block, reading it never ends
    else:
        path = str(tmp_path / "model.npz")
        os.mkdir(path)
    result = {}
    reader = threading.Thread(target=lambda: result.update(error=_load_error(path)), daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "loading the model blocked"
    message = str(result["error"])
    assert message.startswith(path) and "\n" not in message
    assert ("folder" if kind == "folder" else "not a regular file") in message


def _load_error(path):
    try:
        SourceModel.load(path)
    except ModelError as exc:
        return exc
    return None


def test_a_model_file_larger_than_the_bound_is_refused_unread(tmp_path, monkeypatch):
    import audionmf.models

    model = tmp_path / "m.npz"
    small_model().save(model)
    path = tmp_path / "padded.npz"  # a zip archive may follow any data: its arrays stay small
    path.write_bytes(b"\0" * 100_000 + model.read_bytes())
    monkeypatch.setattr(audionmf.models, "MAX_MODEL_BYTES", 100_000)
    with pytest.raises(ModelError, match=r"padded.npz: model file of \d+ bytes, more than a model needs"):
        SourceModel.load(path)


def test_an_array_whose_header_declares_a_huge_shape_is_refused_before_allocating(tmp_path):
    # A few hundred bytes on disk whose .npy header claims 2**40 float64 samples.
    path = tmp_path / "m.npz"
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1))
    header["shape"] = (2**40,)
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("templates.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, header)
            member.write(b"\0" * 64)
    with pytest.raises(ModelError, match="more than a model needs"):
        SourceModel.load(path)


# ----------------------------------------------------------------- point 3: STFT settings
@pytest.mark.parametrize("n_fft, hop, window", [(2048, 2048, "hann"), (2048, 2047, "hann"),
                                                (2048, 1536, "hann"), (512, 512, "hamming"),
                                                (1024, 900, "blackman")])
def test_settings_that_cannot_reconstruct_are_refused(n_fft, hop, window):
    from audionmf import STFTParams, istft, stft

    with pytest.raises(ParameterError) as info:
        STFTParams(n_fft, hop, window)
    message = str(info.value)
    assert f"hop_length={hop} with n_fft={n_fft}" in message and "hop_length=" in message.split(";")[1]
    assert "\n" not in message
    suggested = int(message.rsplit("hop_length=", 1)[1])
    y = np.random.default_rng(0).standard_normal(3 * n_fft)  # the suggestion reconstructs
    S = stft(y, n_fft=n_fft, hop_length=suggested, window=window)
    np.testing.assert_allclose(istft(S, length=len(y), n_fft=n_fft, hop_length=suggested, window=window),
                               y, atol=1e-9)


def test_cli_refuses_a_hop_equal_to_n_fft_as_a_usage_error(capsys):
    from audionmf.cli import main

    assert main(["separate", "x.wav", "--n-fft", "2048", "--hop", "2048"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--hop 2048 with --n-fft 2048" in err[0] and "--hop 1024" in err[0]


@pytest.mark.parametrize("n_fft, hop, window", [
    (2048, None, "hann"), (2048, 512, "hann"), (4, 1, "hann"), (2, 1, "hann"), (1024, 128, "hann"),
    (512, 128, "hamming"), (256, 100, "hann"), (2048, 1024, "hann"), (2048, 1024, "blackman"),
    (1000, 500, "hann"), (2048, 1400, "hann")])
def test_settings_in_use_still_pass(n_fft, hop, window):
    from audionmf import STFTParams

    params = STFTParams(n_fft, hop, window)
    assert params.hop_length == (n_fft // 4 if hop is None else hop)


def test_a_tiny_n_fft_blames_itself_not_a_hop_nobody_gave():
    from audionmf import STFTParams

    with pytest.raises(ParameterError, match=r"^n_fft=2: too small for the default hop") as info:
        STFTParams(2)
    assert "hop_length=0" not in str(info.value)


def test_a_model_file_with_unreconstructable_settings_is_inconsistent(tmp_path):
    path = tmp_path / "m.npz"
    small_model().save(path)
    with np.load(path) as data:
        fields = dict(data)
    fields["hop_length"] = np.int64(N_FFT)
    np.savez(path, **fields)
    with pytest.raises(ModelError, match=r"m.npz: inconsistent model: hop_length=256 with n_fft=256"):
        SourceModel.load(path)


# ----------------------------------------------------------------- point 4: frames and model files
def test_unstack_frames_refuses_inconsistent_shapes_in_one_line():
    from audionmf import unstack_frames

    for M, n_freq, context, match in [
        (np.ones((10, 4)), 3, 1, r"M has shape \(10, 4\); expected \(9, n_frames\)"),
        (np.ones(9), 3, 1, r"M has shape \(9,\)"),
        (np.ones((9, 4)), 0, 1, "n_freq=0"),
        (np.ones((9, 4)), 3, -1, "context=-1"),
        (np.ones((9, 4)), 3, 2**70, "context=1180591620717411303424: must be at most"),
        (np.ones((9, 4)), 3.0, 1, "n_freq=3.0: expected an integer"),
    ]:
        with pytest.raises(ParameterError, match=match) as info:
            unstack_frames(M, n_freq, context)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("n_frames, context", [(1, 1), (2, 5), (3, 3), (4, 2), (1, 32)])
def test_unstack_frames_with_a_context_longer_than_the_signal(rng, n_frames, context):
    """Each frame averages the guesses about it that lie inside the signal."""
    from audionmf import stack_frames, unstack_frames

    n_freq = 3
    M = rng.random((n_freq * (2 * context + 1), n_frames))
    expected = np.zeros((n_freq, n_frames))
    for t in range(n_frames):
        guesses = [M[i * n_freq:(i + 1) * n_freq, t - (i - context)] for i in range(2 * context + 1)
                   if 0 <= t - (i - context) < n_frames]
        expected[:, t] = np.mean(guesses, axis=0)
    np.testing.assert_allclose(unstack_frames(M, n_freq, context), expected)
    V = rng.random((n_freq, n_frames))
    np.testing.assert_allclose(unstack_frames(stack_frames(V, context), n_freq, context), V)


def _model_fields():
    model = small_model()
    return dict(kind=np.str_("audionmf.SourceModel"), format_version=np.int64(1), name=np.str_(model.name),
                templates=model.templates, sr=np.int64(model.sr), n_fft=np.int64(model.n_fft),
                hop_length=np.int64(model.hop_length), window=np.str_(model.window),
                beta=np.float64(model.beta), power=np.float64(model.power), context=np.int64(model.context))


ROWS = N_FFT // 2 + 1
BAD_MODEL_FIELDS = [
    # field, value, what the message says (after "<path>: ")
    ("sr", np.int64(0), "inconsistent model: sr=0: must be at least 1"),
    ("sr", np.int64(-1), "inconsistent model: sr=-1"),
    ("sr", np.float64(1e300), "inconsistent model: sr is float64: expected a whole number"),
    ("sr", np.float64(22050.7), "inconsistent model: sr is float64"),
    ("sr", np.float64(np.inf), "inconsistent model: sr is float64"),
    ("sr", np.int64(2**62), "inconsistent model: sr=4611686018427387904: a sampling rate of at most"),
    ("sr", np.uint64(2**64 - 1), "inconsistent model: sr=18446744073709551615"),
    ("sr", np.str_("8000"), "inconsistent model: sr is <U4"),
    ("sr", np.array([8000, 8000]), "inconsistent model: sr has shape"),
    ("n_fft", np.float64(2.0**70), "inconsistent model: n_fft is float64"),
    ("n_fft", np.int64(2**62), "inconsistent model: n_fft=4611686018427387904: must be at most"),
    ("n_fft", np.int64(0), "inconsistent model: n_fft=0"),
    ("n_fft", np.bool_(True), "inconsistent model: n_fft is bool"),
    ("hop_length", np.int64(0), "inconsistent model: hop_length=0"),
    ("hop_length", np.int64(-5), "inconsistent model: hop_length=-5"),
    ("hop_length", np.int64(2**62), "inconsistent model: hop_length=4611686018427387904 is larger"),
    ("hop_length", np.int64(N_FFT), f"inconsistent model: hop_length={N_FFT} with n_fft={N_FFT}"),
    ("context", np.int64(-1), "inconsistent model: context=-1"),
    ("context", np.int64(2**62), "inconsistent model: context=4611686018427387904: must be at most"),
    ("context", np.int64(1), r"inconsistent model: templates have shape \(129, 2\); expected \(387, K\)"),
    ("context", np.float64(np.nan), "inconsistent model: context is float64"),
    ("beta", np.float64(np.nan), "inconsistent model: beta=nan"),
    ("beta", np.float64(np.inf), "inconsistent model: beta=inf"),
    ("beta", np.float64(1e300), "inconsistent model: beta=1e\\+300"),
    ("beta", np.str_("kl"), "inconsistent model: beta is <U2: expected a real number"),
    ("power", np.float64(0), "inconsistent model: power=0.0"),
    ("power", np.float64(-np.inf), "inconsistent model: power=-inf"),
    ("power", np.float64(np.nan), "inconsistent model: power=nan"),
    ("name", np.int64(3), "inconsistent model: name is int64: expected text"),
    ("name", np.bytes_(b"low"), "inconsistent model: name is \\|S3"),
    ("name", np.str_(""), "inconsistent model: name=''"),
    ("name", np.str_("../x"), "inconsistent model: name='../x'"),
    ("window", np.int64(1), "inconsistent model: window is int64"),
    ("window", np.str_("nope"), "inconsistent model: window='nope'"),
    ("templates", np.full((ROWS, 2), np.nan, np.float32), "inconsistent model: templates must be finite"),
    ("templates", np.full((ROWS, 2), np.inf), "inconsistent model: templates must be finite"),
    ("templates", np.full((ROWS, 2), 1e300), "inconsistent model: templates must be finite"),
    ("templates", np.ones((ROWS, 2), np.complex128), "inconsistent model: templates must be"),
    ("templates", np.ones((ROWS, 2), np.int64), "inconsistent model: templates must be"),
    ("templates", np.ones(ROWS), r"inconsistent model: templates have shape \(129,\)"),
    ("templates", np.ones((ROWS, 2, 1)), r"inconsistent model: templates have shape \(129, 2, 1\)"),
    ("templates", np.ones((ROWS, 0)), r"inconsistent model: templates have shape \(129, 0\)"),
    ("templates", np.float64(1.0), r"inconsistent model: templates have shape \(\)"),
    ("format_version", np.int64(3), "model format 3 is newer than this audionmf reads"),
    ("format_version", np.int64(2**62), "model format 4611686018427387904 is newer"),
    ("format_version", np.int64(0), "inconsistent model: format_version=0"),
    ("format_version", np.float64(np.inf), "not a readable model file \\(format_version is float64"),
    ("format_version", np.float64(1.0), "not a readable model file \\(format_version is float64"),
    ("kind", np.float64(np.nan), "not an audionmf model file"),
]


@pytest.mark.parametrize("field, value, match", BAD_MODEL_FIELDS,
                         ids=[f"{f}-{v.dtype}-{v.ravel()[:1]}" for f, v, _ in BAD_MODEL_FIELDS])
def test_hand_made_model_files_with_absurd_fields_are_refused_naming_the_field(tmp_path, field, value, match):
    fields = _model_fields()
    fields[field] = value
    path = tmp_path / "m.npz"
    np.savez(path, **fields)
    with pytest.raises(ModelError) as info:
        SourceModel.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    import re

    assert re.search(match, message), message


def test_the_hand_made_model_file_is_valid_as_made(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, **_model_fields())
    assert SourceModel.load(path).sr == SR


# ----------------------------------------------------------------- point 5: evaluate
def _two_sources(seconds=1.0):
    rng = np.random.default_rng(5)
    t = np.arange(int(SR * seconds)) / SR
    refs = {"tone": 0.3 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 0.7 * t)),
            "noise": 0.2 * rng.standard_normal(t.size)}
    ests = {"tone": refs["tone"] + 0.1 * refs["noise"] + 0.02 * rng.standard_normal(t.size),
            "noise": refs["noise"] + 0.2 * refs["tone"] + 0.02 * rng.standard_normal(t.size)}
    return refs, ests


def test_scores_agree_with_mir_eval():
    import warnings

    import mir_eval

    from audionmf import evaluate

    refs, ests = _two_sources()
    for permutation in (False, True):
        shuffled = {"b": ests["noise"], "a": ests["tone"]} if permutation else ests
        result = evaluate(refs, shuffled, SR, permutation=permutation)
        names = sorted(refs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            sdr, sir, sar, perm = mir_eval.separation.bss_eval_sources(
                np.stack([refs[n] for n in names]), np.stack([shuffled[n] for n in sorted(shuffled)]),
                compute_permutation=permutation)
        for i, name in enumerate(names):
            got = result["sources"][name]
            np.testing.assert_allclose([got["sdr"], got["sir"], got["sar"]], [sdr[i], sir[i], sar[i]],
                                       rtol=1e-7)
            assert got["estimate"] == sorted(shuffled)[perm[i]]


def test_scores_at_extreme_levels_are_those_at_full_scale():
    """Every score is scale-invariant; sums of squares of such samples would underflow
    (a singular system: mir_eval's broken except clause) or overflow (NaN)."""
    from audionmf import evaluate

    refs, ests = _two_sources(0.25)
    mix = refs["tone"] + refs["noise"]
    expected = evaluate(refs, ests, SR, mixture=mix)["sources"]
    for ref_scale, est_scale in [(1e-300, 1e-300), (1e-30, 1e-30), (1e30, 1e30), (1e300, 1e300),
                                 (1e300, 1e-300)]:
        got = evaluate({n: y * ref_scale for n, y in refs.items()},
                       {n: y * est_scale for n, y in ests.items()}, SR,
                       mixture=mix * est_scale if ref_scale == 1e300 else None)["sources"]
        for name in refs:
            for metric in got[name]:
                if metric != "estimate":
                    assert np.isfinite(got[name][metric])
                    assert got[name][metric] == pytest.approx(expected[name][metric], abs=1e-6)


def test_a_constant_estimate_is_scored_without_warnings():
    import warnings

    from audionmf import evaluate

    refs, _ = _two_sources()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluate(refs, {"tone": np.full(SR, 0.5), "noise": refs["noise"]}, SR)
    assert result["sources"]["tone"]["si_sdr"] == -np.inf  # nothing of the reference
    assert np.isfinite(result["sources"]["tone"]["sdr"])


def test_a_singular_system_is_a_one_line_error(monkeypatch):
    from audionmf import evaluate

    refs, ests = _two_sources()

    import scipy.linalg

    def singular(*args, **kwargs):
        raise np.linalg.LinAlgError("Singular matrix")

    def singular_factors(G, **kwargs):  # getrf's exact zero pivot
        return np.zeros_like(G), np.arange(len(G))

    monkeypatch.setattr(np.linalg, "solve", singular)  # what mir_eval calls
    monkeypatch.setattr(scipy.linalg, "lu_factor", singular_factors)
    with pytest.raises(ParameterError, match="projection on the reference is singular") as info:
        evaluate(refs, ests, SR)
    assert "\n" not in str(info.value)


def test_the_same_reference_twice_is_refused():
    from audionmf import evaluate

    refs, ests = _two_sources()
    with pytest.raises(ParameterError, match="references 'a' and 'b' are the same signal"):
        evaluate({"a": refs["tone"], "b": -3 * refs["tone"]}, {"a": ests["tone"], "b": ests["noise"]}, SR)


def test_ctrl_c_in_the_solver_is_an_interrupt(monkeypatch, tmp_path, capsys):
    import soundfile as sf

    from audionmf import evaluate
    from audionmf.cli import main

    refs, ests = _two_sources()

    import scipy.linalg

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np.linalg, "solve", interrupted)  # what mir_eval calls
    monkeypatch.setattr(scipy.linalg, "lu_factor", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate(refs, ests, SR)
    for folder, signals in (("ref", refs), ("est", ests)):
        (tmp_path / folder).mkdir()
        for name, y in signals.items():
            sf.write(tmp_path / folder / f"{name}.wav", y, SR, subtype="FLOAT")
    assert main(["evaluate", str(tmp_path / "ref"), str(tmp_path / "est")]) == 130
    assert capsys.readouterr().err.strip() == "audionmf: interrupted"


# ----------------------------------------------------------------- point 9: streams as inputs
def _fifo_with_a_writer(tmp_path, seconds=30.0):
    """A named pipe with a thread that writes a WAV of many blocks into it once read."""
    import io

    import soundfile as sf

    path = str(tmp_path / "stream.wav")
    os.mkfifo(path)
    data = io.BytesIO()
    sf.write(data, np.zeros(int(SR * seconds)), SR, format="WAV", subtype="FLOAT")

    def write():
        try:
            with open(path, "wb") as pipe:
                pipe.write(data.getvalue())
        except OSError:  # the reader went away
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return path, writer


def _release(path, writer):
    """Let a writer still waiting for a reader go."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    os.close(fd)
    writer.join(5)


@pytest.mark.parametrize("how", ["load", "Signal.open", "separate"])
def test_a_named_pipe_input_is_refused_at_open_without_hanging(tmp_path, how, capsys):
    from audionmf import AudioError, load
    from audionmf.cli import main
    from audionmf.io import Signal

    path, writer = _fifo_with_a_writer(tmp_path)
    outcome = {}

    def run():
        try:
            if how == "separate":
                outcome["status"] = main(["separate", path, "-o", str(tmp_path / "out"), "-q"])
            else:
                (load if how == "load" else Signal.open)(path)
        except AudioError as exc:
            outcome["error"] = str(exc)

    reader = threading.Thread(target=run, daemon=True)
    reader.start()
    reader.join(20)
    hung = reader.is_alive()
    _release(path, writer)
    assert not hung, "reading a named pipe hung"
    if how == "separate":
        assert outcome["status"] == 1
        message = capsys.readouterr().err.strip().splitlines()[0]
    else:
        message = outcome["error"]
    assert f"{path}: is a pipe or stream, not a file" in message and "save it to a file first" in message


# ----------------------------------------------------------------- point 8: arrays and argument types
@pytest.mark.parametrize("shape", [(44100, 2), (8000, 1), (20000, 6)])
def test_a_soundfile_layout_array_is_named_with_the_fix(shape):
    from audionmf import separate, stft

    y = np.random.default_rng(0).standard_normal(shape) * 0.1
    for call in (lambda: separate(y, SR), lambda: stft(y)):
        with pytest.raises(ParameterError) as info:
            call()
        message = str(info.value)
        assert f"shape {shape}" in message and "(n_samples, n_channels)" in message and "y.T" in message
        assert "too short" not in message and "\n" not in message


def test_many_short_channels_are_not_taken_for_the_soundfile_layout():
    from audionmf import stft

    assert stft(np.zeros((200, 512)) + 0.1, n_fft=64).shape == (200, 33, 33)


# The table: every argument of the public functions of io, spectrogram, models and
# evaluate at its bounds, just past them, and absurd. Each row: a call, the
# argument's name (None: the call must succeed).
def _api_table():
    import audionmf
    from audionmf import STFTParams, SourceModel, evaluate, istft, load, save, stft

    y = np.random.default_rng(1).standard_normal(4096) * 0.1
    S = stft(y, n_fft=N_FFT)
    refs = {"a": y[:1024]}  # one source: one small projection per call
    learn = dict(n_components=2, n_fft=N_FFT, context=0, max_iter=2, semitones=(0,))
    absurd = [0, -1, np.nan, np.inf, 1e300, 2**70, "x", True, 2.5, None]
    rows = []

    def row(name, call, values, ok=(), where=""):
        rows.extend((f"{where}{name}", name, call, v, False) for v in values)
        rows.extend((f"{where}{name}", name, call, v, True) for v in ok)

    sample = str(__import__("conftest").SAMPLE)
    row("sr", lambda v, tmp: load(sample, sr=v), absurd[:-1] + [22050.7, 10**7 + 1, np.float64(8000)],
        ok=[8000, np.int64(11025), None])
    row("mono", lambda v, tmp: load(sample, mono=v), ["yes", 1, None, np.nan], ok=[True, np.bool_(False)])
    row("dtype", lambda v, tmp: load(sample, dtype=v), [np.int16, "int32", None, "nonsense", 5, np.complex128],
        ok=[np.float64, "float32"])
    row("path", lambda v, tmp: load(v), [5, None, 2.5, True, [sample]])
    row("sr", lambda v, tmp: save(tmp / "o.wav", y, v), absurd + [22050.7, 10**7 + 1], ok=[1, 8000])
    row("subtype", lambda v, tmp: save(tmp / "o.wav", y, SR, subtype=v), [5, "NOPE", True, np.nan],
        ok=["PCM_16", None])
    row("path", lambda v, tmp: save(v, y, SR), [5, None, True])
    row("y", lambda v, tmp: save(tmp / "o.wav", v, SR), ["abc", None, np.array([np.nan]), np.zeros((2, 3, 4))])
    for fn in ("stft", "istft"):
        call = (lambda f: (lambda kw: f(kw)))(None)
        rows_fn = (lambda kw, fn=fn: stft(y, **kw) if fn == "stft" else istft(S, length=len(y), **kw))
        row("n_fft", lambda v, tmp, r=rows_fn: r({"n_fft": v}),
            absurd + [1, 3, 2**20 + 1, np.float64(256), "256"], ok=[] if fn == "istft" else [4, 2**20])
        row("hop_length", lambda v, tmp, r=rows_fn: r({"n_fft": N_FFT, "hop_length": v}),
            [0, -1, np.nan, np.inf, 1e300, 2**70, "x", True, 2.5, N_FFT + 1, 0.25 * N_FFT],
            ok=[N_FFT // 4, None] if fn == "istft" else [1, N_FFT // 2, None])
        row("window", lambda v, tmp, r=rows_fn: r({"n_fft": N_FFT, "window": v}),
            [5, None, "nope", np.nan, ("kaiser", 8), True], ok=["hann", "hamming"])
    row("y", lambda v, tmp: stft(v), ["abc", None, np.array([np.inf]), np.zeros((2, 2, 600)), 5.0,
                                      np.zeros(600, np.int16), np.array([], float)])
    row("length", lambda v, tmp: istft(S, length=v, n_fft=N_FFT), absurd[:-1] + [np.float64(4096)],
        ok=[1, 4096, np.int64(10)])
    row("S", lambda v, tmp: istft(v, length=10, n_fft=N_FFT), ["abc", None, np.zeros((3, 4)),
                                                               np.full((129, 4), np.nan)])
    row("n_fft", lambda v, tmp: STFTParams(v), absurd + [1, 3, 2**20 + 1], ok=[4, 2**20])
    row("hop_length", lambda v, tmp: STFTParams(N_FFT, v), [0, -1, np.nan, np.inf, 1e300, 2**70, "x", True,
                                                            2.5, N_FFT + 1], ok=[1, N_FFT // 2, None])
    row("window", lambda v, tmp: STFTParams(N_FFT, None, v), [5, None, "", "nope", np.nan], ok=["blackman"])
    row("references", lambda v, tmp: evaluate(v, refs, SR), [[y], None, 5, "ab"], ok=[refs])
    row("reference 'a'", lambda v, tmp: evaluate({"a": v}, refs, SR), ["abc", None, np.full(1024, np.nan),
                                                                        np.zeros((1024, 2)) + 0.1])
    row("estimates", lambda v, tmp: evaluate(refs, v, SR), [[y], None, 5, "ab"], ok=[refs])
    row("estimate 'a'", lambda v, tmp: evaluate(refs, {"a": v}, SR), ["abc", None, np.array([np.inf])])
    row("sr", lambda v, tmp: evaluate(refs, refs, v), absurd[:-1] + [22050.7, 10**7 + 1],
        ok=[None, 8000, np.int64(8000)])
    row("permutation", lambda v, tmp: evaluate(refs, refs, SR, permutation=v), ["yes", 1, None, np.nan],
        ok=[True, False])
    row("mixture", lambda v, tmp: evaluate(refs, refs, SR, mixture=v), ["abc", np.zeros(1024), 5,
                                                                         np.full(1024, np.inf)],
        ok=[None, y[:1024]])
    row("path", lambda v, tmp: SourceModel.load(v), [5, None, True, 2.5])
    for arg, values, ok in [
        ("sr", absurd + [22050.7, 10**7 + 1, np.float64(8000)], [SR]),
        ("name", [5, None, "", "a/b", ".hidden", "residual", True], ["ok"]),
        ("n_components", absurd + [4097], [1]),
        # (None means the default, as in separate and decompose: the analysis is one)
        ("n_fft", absurd[:-1] + [1, 2**20 + 1], [N_FFT, None]),
        ("hop_length", [0, -1, np.nan, np.inf, 1e300, 2**70, "x", True, 2.5, N_FFT], [N_FFT // 2]),
        ("window", [5, "nope", np.nan], ["hamming"]),
        ("beta", [np.nan, np.inf, 1e300, 2**70, "x", True, 10.5], [0, "is", 2, None]),
        ("power", [0, -1, np.nan, np.inf, 1e300, 2**70, "x", True, 2.5], [None, 2, 0.5]),
        ("context", [-1, np.nan, np.inf, 1e300, 2**70, "x", True, 2.5, 33], [0, 1]),
        ("semitones", [[np.inf], [np.nan], [1e300], [2**70], "x", [25], [], 5, [True]], [(0,), [-1, 1], [0.5]]),
        ("tempos", [[np.nan], [np.inf], [0], [3], [2**70], "x", [], 5, [True]], [(1,), [0.9, 1.1]]),
        ("sparsity", [-1, np.nan, np.inf, "x", True], [0, 0.5, 1e300]),
        ("max_iter", [-1, np.nan, np.inf, 1e300, 2**70, "x", True, 2.5], [1, 0]),
        ("silence_db", [np.nan, np.inf, -np.inf, 1e300, 2**70, "x", True, 1.0, None], [-40, -120.5, 0]),
        ("random_state", ["x", 2.5, -1, np.nan], [None, 0, np.random.default_rng(0)]),
        ("callback", ["x", 5, True], [None, lambda i, loss: None]),
    ]:
        def call(v, tmp, arg=arg):
            kw = {**learn, "name": "m", arg: v}
            return SourceModel.learn(y, kw.pop("sr", SR), **kw)
        row(arg, call, values, ok=ok, where="learn.")
    row("audio", lambda v, tmp: SourceModel.learn(v, SR, name="m", **learn),
        [5, None, "", [], [None], [""], [["abc"]], np.zeros((2, 2, 600)), True, {"a": y}], ok=[[y, y]],
        where="learn.")
    return rows


API_TABLE = _api_table()


@pytest.mark.parametrize("name, call, value, ok", [row[1:] for row in API_TABLE],
                         ids=[f"{i}-{label}-{'ok' if ok else 'bad'}-{str(v)[:20]}"
                              for i, (label, _, _, v, ok) in enumerate(API_TABLE)])
def test_api_arguments_at_their_bounds_and_beyond(tmp_path, name, call, value, ok):
    from audionmf import AudioError

    if ok:
        call(value, tmp_path)
        return
    with pytest.raises((ParameterError, AudioError, ModelError)) as info:
        call(value, tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert name in message, message
