"""Batches: folders, glob patterns, --skip-existing, --jobs."""
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audionmf.cli import main

from conftest import SAMPLE


@pytest.fixture
def album(tmp_path):
    """Four short songs in a folder (one in a subfolder) and a text file beside them."""
    mix, sr = sf.read(SAMPLE, frames=3 * 22050)
    folder = tmp_path / "album"
    (folder / "disc2").mkdir(parents=True)
    for i, path in enumerate([folder / "a.wav", folder / "b.flac", folder / "c.wav", folder / "disc2" / "d.wav"]):
        sf.write(path, np.roll(mix, 5000 * i), sr)
    (folder / "notes.txt").write_text("liner notes")
    return folder


def started_files(out):
    """Whether a file's own folder has appeared in the batch's output folder."""
    return out.is_dir() and any(out.iterdir())


def outputs(out):
    return sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)


def test_a_folder_means_the_audio_files_in_it(tmp_path, album):
    out = tmp_path / "out"
    assert main(["separate", str(album), "-o", str(out), "-q", "--iterations", "10"]) == 0
    assert outputs(out) == [f"{s}/source{i}.wav" for s in "abc" for i in (1, 2)]


def test_glob_patterns(tmp_path, album):
    out = tmp_path / "out"
    assert main(["separate", str(album / "**" / "*.wav"), "-o", str(out), "-q", "--iterations", "10"]) == 0
    assert outputs(out) == [f"{s}/source{i}.wav" for s in "acd" for i in (1, 2)]


def test_a_pattern_that_matches_nothing(tmp_path, capsys):
    assert main(["separate", str(tmp_path / "*.wav"), "-o", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "*.wav: no such file" in err[0]


def test_skip_existing_resumes(tmp_path, album, capsys):
    out = tmp_path / "out"
    assert main(["separate", str(album / "a.wav"), "-o", str(out), "-q", "--iterations", "10"]) == 0
    first = (out / "a" / "source1.wav").stat().st_mtime_ns
    (out / "b").mkdir()
    (out / "b" / "source1.wav").write_bytes(b"partial set: not skipped")
    assert main(["separate", str(album), "-o", str(out), "--skip-existing", "--iterations", "10"]) == 0
    err = capsys.readouterr().err
    assert "1 of 3 inputs already separated, skipped" in err
    assert (out / "a" / "source1.wav").stat().st_mtime_ns == first
    assert outputs(out) == [f"{s}/source{i}.wav" for s in "abc" for i in (1, 2)]
    sf.read(out / "b" / "source1.wav")  # redone: a real audio file now


def test_outputs_inside_the_inputs_tree_are_not_inputs(tmp_path, album, capsys):
    """'album/**/*.wav' -o album/stems: the second run (resuming, say) must not take
    the first run's sources for songs; an input that merely sits in a folder below
    -o (here -o is the album's parent) is still one."""
    out = album / "stems"
    args = ["separate", str(album / "**" / "*.wav"), "-o", str(out), "--iterations", "5"]
    assert main(args + ["-q"]) == 0
    assert main(args + ["--skip-existing"]) == 0
    assert "3 of 3 inputs already separated, skipped" in capsys.readouterr().err
    assert outputs(out) == [f"{s}/source{i}.wav" for s in "acd" for i in (1, 2)]
    # whatever this run's sources are called: source3.wav is not the first run's
    assert main(args + ["--sources", "3", "--format", "flac", "-q"]) == 0
    assert outputs(out) == sorted([f"{s}/source{i}.wav" for s in "acd" for i in (1, 2)]
                                  + [f"{s}/source{i}.flac" for s in "acd" for i in (1, 2, 3)])
    assert main(args + ["--skip-existing"]) == 0
    assert "3 of 3 inputs already separated, skipped" in capsys.readouterr().err
    assert main(["separate", str(out / "**" / "*.wav"), "-o", str(out)]) == 2
    assert "this command's own outputs" in capsys.readouterr().err
    elsewhere = tmp_path / "elsewhere"
    assert main(["separate", str(album / "disc2" / "*.wav"), "-o", str(tmp_path), "-q",
                 "--iterations", "5"]) == 0  # album/disc2/d.wav: an input, not an output
    assert (tmp_path / "d" / "source1.wav").is_file() and not elsewhere.exists()


def test_jobs_give_the_same_files_and_report_bad_ones(tmp_path, album):
    (album / "broken.wav").write_bytes(b"RIFF broken")
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["-m", "audionmf", "separate", str(album), "--iterations", "20"]
    first = subprocess.run([sys.executable, *args, "-o", str(one), "--jobs", "1"],
                           capture_output=True, text=True, timeout=300)
    second = subprocess.run([sys.executable, *args, "-o", str(two), "--jobs", "2"],
                            capture_output=True, text=True, timeout=300)
    for proc in (first, second):
        assert proc.returncode == 1
        assert "broken.wav: not a readable audio file" in proc.stderr
        assert "1 of 4 inputs failed: " in proc.stderr and "Traceback" not in proc.stderr
    assert outputs(one) == outputs(two) == [f"{s}/source{i}.wav" for s in "abc" for i in (1, 2)]
    for name in outputs(one):  # same seed, same result, in parallel too
        np.testing.assert_array_equal(sf.read(one / name)[0], sf.read(two / name)[0])


def test_a_batch_makes_its_output_folder_before_the_files(tmp_path, album, monkeypatch):
    """Each file's worker finds the shared folder made, so a failing one removes only
    the folder it made itself, never the one another worker is about to write into."""
    import audionmf.cli.separate as cli
    from audionmf._validation import AudioError
    from audionmf.io import missing_folders

    out = tmp_path / "new" / "out"
    seen = []

    def fake(path, args, protected):
        stem = os.path.splitext(os.path.basename(path))[0]
        seen.append(missing_folders(os.path.join(args.out, stem)))
        if stem == "a":
            raise AudioError(f"{path}: refused by the test")
        return os.path.join(args.out, stem)

    monkeypatch.setattr(cli, "_separate_one", fake)
    assert main(["separate", str(album / "a.wav"), str(album / "c.wav"), "-o", str(out), "-q",
                 "--jobs", "1"]) == 1
    assert seen == [[str(out / "a")], [str(out / "c")]]
    assert not (tmp_path / "new").exists()  # no file written: the folders made for the batch are gone


def test_an_output_folder_that_cannot_be_made_leaves_nothing(tmp_path, album, capsys):
    out = tmp_path / "new" / ("x" * 300)  # "new" is made, then the name is too long
    assert main(["separate", str(album / "a.wav"), str(album / "c.wav"), "-o", str(out), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot create folder" in err[0] and str(out) in err[0], err
    assert not (tmp_path / "new").exists()
    assert main(["separate", str(album / "a.wav"), "-o", str(out), "-q"]) == 1  # one file: the same
    assert "cannot create folder" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_a_batch_that_writes_nothing_leaves_no_folder(tmp_path):
    for name in ("x.wav", "y.wav"):
        (tmp_path / name).write_bytes(b"RIFF broken")
    out = tmp_path / "deep" / "out"
    assert main(["separate", str(tmp_path / "x.wav"), str(tmp_path / "y.wav"), "-o", str(out), "-q",
                 "--jobs", "2"]) == 1
    assert sorted(os.listdir(tmp_path)) == ["x.wav", "y.wav"]


def test_a_missing_input_beside_existing_outputs(tmp_path, album, capsys):
    out = tmp_path / "out"
    assert main(["separate", str(album / "a.wav"), "-o", str(out), "-q", "--iterations", "10"]) == 0
    code = main(["separate", str(album / "a.wav"), str(tmp_path / "gone.wav"), str(album / "c.wav"),
                 "-o", str(out), "-q", "--iterations", "10"])
    assert code == 1
    err = capsys.readouterr().err
    assert "gone.wav: no such file" in err and "internal error" not in err
    assert outputs(out) == [f"{s}/source{i}.wav" for s in "ac" for i in (1, 2)]


def test_one_file_under_two_spellings_is_done_once(tmp_path, album, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert main(["separate", "album/a.wav", "./album/a.wav", str(album / "a.wav"), "-o", str(out),
                 "--iterations", "10"]) == 0
    assert capsys.readouterr().err.count("-> ") == 1


def test_plot_failure_leaves_no_stems(tmp_path, album):
    out = tmp_path / "out"
    (out / "a" / "separation.png").mkdir(parents=True)  # the figure cannot be written
    assert main(["separate", str(album / "a.wav"), "-o", str(out), "--plot", "-q", "--iterations", "10"]) == 1
    assert outputs(out) == []


def test_ctrl_c_while_the_arguments_are_read(monkeypatch, capsys):
    import audionmf.cli as cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.argparse.ArgumentParser, "parse_args", interrupted)
    try:
        code = main(["separate", "x.wav"])
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C escaped main()")
    assert code == 130
    assert capsys.readouterr().err == "audionmf: interrupted\n"


def test_ctrl_c_in_a_batch_run_from_python_gives_sigint_back(tmp_path, album, monkeypatch, capsys):
    """The command called from Python: after a batch stopped by Ctrl-C (which leaves
    SIGINT ignored while it winds up), the caller's Ctrl-C works again."""
    import signal
    import time

    import audionmf._batch as batch

    def interrupted_batch(task, paths, jobs, quiet):
        state = {"flag": False}
        with batch._interrupt_flag(state):
            os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C while the workers run
            deadline = time.time() + 5
            while not state["flag"] and time.time() < deadline:
                time.sleep(0.01)
            assert state["flag"]
            raise KeyboardInterrupt  # as run_local does on seeing the flag
        yield

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's here")
    monkeypatch.setattr(batch, "run_local", interrupted_batch)
    try:
        assert main(["separate", str(album), "-o", str(tmp_path / "out"), "--jobs", "2"]) == 130
        assert "interrupted; 0 of 3 inputs were separated" in capsys.readouterr().err
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_main_runs_in_a_thread(tmp_path, album):
    """main() off the main thread (where SIGINT's handler cannot be set) runs a
    batch and returns its status."""
    import threading

    result = {}

    def run():
        try:
            result["code"] = main(["separate", str(album), "-o", str(tmp_path / "out"),
                                   "--jobs", "1", "--quiet"])
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(300)
    assert result == {"code": 0}
    assert len(list((tmp_path / "out").iterdir())) == 3


def workers(pid):
    """The pids of the worker processes a batch has started (Linux only)."""
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        return []
    found = []
    for child in children:
        try:
            if b"spawn_main" in open(f"/proc/{child}/cmdline", "rb").read():
                found.append(int(child))
        except OSError:  # already gone
            pass
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


def complete_sets_only(out):
    for folder in out.iterdir() if out.exists() else []:
        assert sorted(p.name for p in folder.iterdir()) == ["source1.wav", "source2.wav"]


def test_ctrl_c_while_the_workers_start(tmp_path, album):
    """Ctrl-C while the worker processes are still starting (importing): the batch
    stops there, with no traceback from the workers or from the pool, and no worker
    goes on to separate the files already queued for it."""
    import signal
    import time

    mix, sr = sf.read(SAMPLE)
    for i in range(4):
        sf.write(album / f"long{i}.wav", np.tile(mix, 6), sr)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "audionmf", "separate", str(album), "-o", str(out), "--jobs", "2"],
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    if not os.path.exists(f"/proc/{proc.pid}/task/{proc.pid}/children"):
        proc.kill()
        proc.communicate()
        pytest.skip("needs /proc/PID/task/PID/children (Linux) to see the workers start")
    deadline = time.time() + 120
    while len(workers(proc.pid)) < 2 and time.time() < deadline:
        time.sleep(0.002)
    time.sleep(0.1)  # they are importing numpy and the rest (about a second)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted; 0 of 7 inputs were separated" in err and "Traceback" not in err, err
    assert not out.exists()  # the batch made it, and nothing was written in it


def test_ctrl_c_with_jobs_stops_at_once(tmp_path, album):
    import signal
    import time

    mix, sr = sf.read(SAMPLE)
    for i in range(6):
        sf.write(album / f"long{i}.wav", np.tile(mix, 6), sr)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "audionmf", "separate", str(album), "-o", str(out), "--jobs", "2"],
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while not started_files(out) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    complete_sets_only(out)  # and no temporary files


@pytest.mark.parametrize("background", [False, True])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_sigterm_stops_and_cleans_up_as_ctrl_c_does(tmp_path, album, jobs, background):
    """kill, timeout and schedulers send SIGTERM: the file in progress is abandoned,
    its temporary files removed, and the exit status is 143, with no traceback (nor,
    with worker processes, warnings of leaked semaphores). Also for a job a shell
    started in the background, which ignores SIGINT."""
    import signal
    import time

    mix, sr = sf.read(SAMPLE)
    for i in range(4):
        sf.write(album / f"long{i}.wav", np.tile(mix, 6), sr)
    out = tmp_path / "out"
    source = str(album) if jobs == "2" else str(album / "long0.wav")
    proc = subprocess.Popen([sys.executable, "-m", "audionmf", "separate", source, "-o", str(out), "--jobs", jobs],
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if background else None)
    deadline = time.time() + 120
    while not started_files(out) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted" in err and "Traceback" not in err and "leaked" not in err
    if jobs == "1":
        assert not out.exists()
    complete_sets_only(out)  # and no temporary files


def _workers_of(pid):
    """PIDs of the worker processes of the batch run by process ``pid`` (Linux)."""
    workers = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmd:
                cmdline = cmd.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            workers.append(int(entry))
    return workers


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the workers in /proc")
def test_a_worker_that_dies_fails_its_file_not_the_batch(tmp_path, album):
    """A worker killed outright (as by the out-of-memory killer) breaks its process
    pool, which fails every file not done; the file it was on is reported failed,
    its temporary files removed, and the others are separated in a new pool."""
    import signal
    import time

    mix, sr = sf.read(SAMPLE)
    for path in album.rglob("*.*"):
        path.unlink()
    for i in range(4):
        sf.write(album / f"long{i}.wav", np.tile(mix, 4), sr)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "audionmf", "separate", str(album), "-o", str(out),
                             "--jobs", "2", "--iterations", "20"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out.is_dir() and len(list(out.iterdir())) == 2) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    workers = _workers_of(proc.pid)
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    died = [line for line in err.splitlines() if "a worker process died" in line]
    assert len(died) == 1 and "Traceback" not in err, err
    assert "long0.wav" in died[0] or "long1.wav" in died[0]  # one of the two being separated
    assert "1 of 4 inputs failed" in err
    done = sorted(folder.name for folder in out.iterdir())
    assert len(done) == 3
    complete_sets_only(out)  # and no temporary files: not even in the dead worker's folder


@pytest.mark.parametrize("how", ["second Ctrl-C", "parent killed"])
def test_a_batch_that_is_stopped_hard(tmp_path, album, how):
    """A second Ctrl-C while the workers abandon their files changes nothing (no
    traceback, complete sets only); workers whose parent is killed outright abandon
    their file and exit instead of working on, or waiting, forever."""
    import signal
    import time

    mix, sr = sf.read(SAMPLE)
    for i in range(4):
        sf.write(album / f"long{i}.wav", np.tile(mix, 12), sr)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "audionmf", "separate", str(album), "-o", str(out), "--jobs", "2"],
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    if not os.path.exists(f"/proc/{proc.pid}/task/{proc.pid}/children"):
        proc.kill()
        proc.communicate()
        pytest.skip("needs /proc/PID/task/PID/children (Linux) to see the workers")
    deadline = time.time() + 120
    while not started_files(out) and time.time() < deadline:  # the first files are being separated
        time.sleep(0.05)
    time.sleep(0.5)
    started = workers(proc.pid)
    assert len(started) == 2
    try:
        stop_hard(proc, started, how)
    finally:  # a failed test leaves no processes behind
        for pid in started + [proc.pid]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    complete_sets_only(out)


def stop_hard(proc, started, how):
    import signal
    import time

    if how == "second Ctrl-C":
        deadline = time.time() + 10
        while proc.poll() is None and time.time() < deadline:  # a user who keeps pressing Ctrl-C
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:  # all gone
                break
            time.sleep(0.003)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "interrupted; " in err and " inputs were separated" in err, err
        assert "Traceback" not in err and "Exception ignored" not in err, err
    else:
        proc.kill()
        proc.communicate(timeout=60)
        deadline = time.time() + 30
        while any(alive(pid) for pid in started) and time.time() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in started)


def test_an_error_while_the_command_is_stopped_is_the_stop(monkeypatch, tmp_path):
    """An interrupt that lands inside a lock's release comes out as a RuntimeError:
    once the command was sent SIGTERM, a file's error is its interruption (exit 143),
    not an internal error; before, it is one."""
    from audionmf import _batch
    from audionmf.cli import get_parser
    from audionmf.cli import separate as cli_separate

    def broken(path, args, protected):
        raise RuntimeError("cannot release un-acquired lock")

    monkeypatch.setattr(cli_separate, "_separate_one", broken)
    args = get_parser().parse_args(["separate", "song.flac", "-o", str(tmp_path / "out")])
    task = cli_separate._SeparateTask(args, protected=[])
    path, folder, (message, _) = task("song.flac")
    assert folder is None and message.startswith("internal error: RuntimeError")
    monkeypatch.setitem(_batch.INTERRUPTS, "terminated", True)
    with pytest.raises(KeyboardInterrupt):
        task("song.flac")
    monkeypatch.setitem(_batch.WORKER, "in_worker", True)
    assert task("song.flac")[2][0] == "interrupted; nothing written"
