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
