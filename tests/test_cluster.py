"""`audionmf separate --scheduler`: a batch on a real Dask cluster on loopback."""
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audionmf.cli import main

from conftest import gated, tone

distributed = pytest.importorskip("distributed")

SR = 8000


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        yield cluster


def write_inputs(folder, count):
    folder.mkdir()
    for i in range(count):
        a = 0.3 * gated(tone(300 + 50 * i, SR, 2, (1, 0.5)), SR, period=0.5, duty=0.5)
        b = 0.2 * gated(tone(1500, SR, 2, (1, 0.3)), SR, period=0.3, duty=0.5, offset=0.1)
        sf.write(folder / f"clip{i}.wav", a + b, SR, subtype="FLOAT")
    return folder


def outputs(folder):
    return {os.path.relpath(os.path.join(root, name), folder): sf.read(os.path.join(root, name))[0]
            for root, _, names in os.walk(folder) for name in names}


def test_batch_on_a_cluster_equals_the_local_batch(tmp_path, cluster, monkeypatch, capsys):
    inputs = write_inputs(tmp_path / "in", 4)
    (inputs / "broken.wav").write_bytes(b"not audio at all")
    monkeypatch.chdir(tmp_path)  # relative paths: the workers get absolute ones
    code = main(["separate", "in", "-o", "remote", "--scheduler", cluster.scheduler_address,
                 "--n-fft", "512", "-q"])
    err = capsys.readouterr().err
    assert code == 1
    assert "audionmf: error: in/broken.wav: not a readable audio file" in err
    assert "1 of 5 inputs failed: in/broken.wav" in err
    assert main(["separate", "in", "-o", "local", "--n-fft", "512", "-q"]) == 1
    remote, local = outputs(tmp_path / "remote"), outputs(tmp_path / "local")
    assert sorted(remote) == sorted(local) == [f"clip{i}/source{j}.wav" for i in range(4) for j in (1, 2)]
    for name in remote:
        np.testing.assert_array_equal(remote[name], local[name])


def test_skip_existing_on_a_cluster(tmp_path, cluster, capsys):
    inputs = write_inputs(tmp_path / "in", 2)
    args = ["separate", str(inputs), "-o", str(tmp_path / "out"), "--scheduler",
            cluster.scheduler_address, "--n-fft", "512", "--skip-existing"]
    assert main(args) == 0
    first = os.path.getmtime(tmp_path / "out" / "clip0" / "source1.wav")
    capsys.readouterr()
    assert main(args) == 0
    assert "2 of 2 inputs already separated, skipped" in capsys.readouterr().err
    assert os.path.getmtime(tmp_path / "out" / "clip0" / "source1.wav") == first


def test_unreachable_scheduler_is_one_line(tmp_path):
    inputs = write_inputs(tmp_path / "in", 1)
    done = subprocess.run([sys.executable, "-m", "audionmf", "separate", str(inputs), "-o",
                           str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:9"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "audionmf: error: cannot reach the Dask scheduler at tcp://127.0.0.1:9"), done.stderr
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_a_scheduler_address_that_is_no_address(tmp_path, capsys):
    inputs = write_inputs(tmp_path / "in", 1)
    assert main(["separate", str(inputs), "-o", str(tmp_path / "out"), "--scheduler", "nonsense"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("audionmf: error: cannot reach the Dask scheduler at nonsense")
    assert "internal error" not in err


def test_scheduler_and_jobs_do_not_mix(tmp_path, capsys):
    code = main(["separate", "x.wav", "--scheduler", "tcp://127.0.0.1:9", "--jobs", "2"])
    assert code == 2
    assert "--jobs cannot be used with --scheduler" in capsys.readouterr().err


def test_a_name_that_is_not_utf8_on_a_cluster(tmp_path, cluster, capsys):
    """Its task's key must be text the scheduler can encode; the file is separated as
    the others are (it used to fail every file of the batch)."""
    inputs = write_inputs(tmp_path / "in", 1)
    os.rename(inputs / "clip0.wav", os.path.join(os.fsencode(inputs), b"clip\xe9.wav"))
    write_inputs(tmp_path / "more", 1)
    os.rename(tmp_path / "more" / "clip0.wav", inputs / "plain.wav")
    code = main(["separate", str(inputs), "-o", str(tmp_path / "out"), "--scheduler",
                 cluster.scheduler_address, "--n-fft", "512", "-q"])
    assert (code, capsys.readouterr().err) == (0, "")
    assert sorted(os.listdir(os.fsencode(tmp_path / "out"))) == [b"clip\xe9", b"plain"]
