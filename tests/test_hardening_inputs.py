"""Hardening of the inputs (issue #26): models, STFT settings, evaluation, arrays, streams.

Each test here failed before its fix; the table at the end walks the Python API's
arguments at their bounds, just past them and absurd.
"""
import os
import threading
import zipfile

import numpy as np
import pytest

from audionmf import ModelError, SourceModel

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
