"""The listening report: written with the sources or not at all, what it shows, the
command it gives, the batch's index, the scores page, and a real browser opening it."""
import os
import re
import shlex

import numpy as np
import pytest
import soundfile as sf

from audionmf import separate_file
from audionmf.cli import get_parser, main
from audionmf.cli.separate import _SeparateTask
from audionmf.limits import Limits
from audionmf.report import group_ranges, read_summary, separation_report

SAMPLE = os.path.join(os.path.dirname(__file__), "..", "audio_samples", "drums_organ_bass.flac")


def excerpt(path, start, seconds):
    y, sr = sf.read(SAMPLE)
    sf.write(path, y[int(start * sr):int((start + seconds) * sr)], sr)
    return str(path)


def audio_sources(page):
    return re.findall(r'<audio[^>]*><source src="([^"]+)"', page)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Two short inputs separated blindly with --report, from inside their folder."""
    folder = tmp_path_factory.mktemp("report")
    first = excerpt(folder / "first.flac", 0.0, 3.0)
    excerpt(folder / "second.wav", 4.0, 2.0)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        status = main(["separate", "first.flac", "second.wav", "-o", "out", "--components", "6",
                       "--report", "-q"])
    finally:
        os.chdir(cwd)
    assert status == 0
    return folder, first


def test_the_report_lies_beside_the_sources_and_is_self_contained(batch):
    folder, _ = batch
    assert sorted(os.listdir(folder / "out" / "first")) == ["report.html", "source1.wav", "source2.wav"]
    page = (folder / "out" / "first" / "report.html").read_text()
    players = audio_sources(page)
    # the mixture by a relative link to the input, the sources beside, one clip per component
    assert players[:3] == ["../../first.flac", "source1.wav", "source2.wav"]
    assert len(players) == 3 + 6 and all(p.startswith("data:audio/flac;base64,") for p in players[3:])
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing from the network
    assert page.count("<img") == 3 + 1 + 6  # spectrograms, energy shares, components
    summary = read_summary(folder / "out" / "first" / "report.html")
    assert summary["sources"] == ["source1", "source2"] and summary["duration"] == 3.0
    assert summary["seconds"] > 0 and summary["mode"] == "blind"


def test_the_rerun_command_gives_the_same_sources(batch, monkeypatch):
    folder, _ = batch
    page = (folder / "out" / "first" / "report.html").read_text()
    command = re.search(r'<pre id="rerun">([^<]*)</pre>', page).group(1)
    argv = shlex.split(command.replace("&#x27;", "'"))
    assert argv[:5] == ["audionmf", "separate", "first.flac", "-o", "out"]
    assert "--components" in argv and argv.count("--group") == 2
    groups = [argv[i + 1] for i, token in enumerate(argv) if token == "--group"]
    assert sorted(int(k) for g in groups for part in g.split(",")
                  for k in (range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1))) == list(range(6))
    monkeypatch.chdir(folder)
    argv[argv.index("-o") + 1] = "again"
    assert main(argv[1:] + ["-q"]) == 0
    for name in ("source1", "source2"):
        np.testing.assert_array_equal(sf.read(folder / "again" / "first" / f"{name}.wav")[0],
                                      sf.read(folder / "out" / "first" / f"{name}.wav")[0])


def test_the_index_links_every_report(batch):
    folder, _ = batch
    index = (folder / "out" / "index.html").read_text()
    assert 'href="first/report.html"' in index and 'href="second/report.html"' in index
    assert "0:03.0" in index and "0:02.0" in index and "source1, source2" in index


def test_skip_existing_counts_the_report(batch, monkeypatch, capsys):
    folder, _ = batch
    monkeypatch.chdir(folder)
    assert main(["separate", "first.flac", "-o", "out", "--components", "6", "--report",
                 "--skip-existing"]) == 0
    assert "1 of 1 inputs already separated" in capsys.readouterr().err
    os.remove(folder / "out" / "second" / "report.html")
    assert main(["separate", "second.wav", "-o", "out", "--components", "6", "--report",
                 "--skip-existing", "-q"]) == 0
    assert os.path.isfile(folder / "out" / "second" / "report.html")  # it was run again


def test_a_failing_report_leaves_nothing(tmp_path):
    path = excerpt(tmp_path / "mix.wav", 0.0, 1.0)

    def broken(separation):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        separate_file(path, tmp_path / "out" / "mix", two_stems="drums", report=broken)
    assert not os.path.exists(tmp_path / "out")


def test_a_dead_worker_leaves_no_part_of_a_report(tmp_path):
    folder = tmp_path / "out" / "song"
    folder.mkdir(parents=True)
    (folder / ".report.html.x1y2.part").write_text("half a page")
    args = get_parser().parse_args(["separate", "song.flac", "-o", str(tmp_path / "out"), "--report"])
    task = _SeparateTask(args, protected=[])
    task.abandoned("song.flac")
    assert not os.path.exists(folder)


def test_two_stems_shows_shares_and_no_components(tmp_path):
    path = excerpt(tmp_path / "mix.wav", 0.0, 2.0)
    separate_file(path, tmp_path / "out", two_stems="drums", report=separation_report)
    page = (tmp_path / "out" / "report.html").read_text()
    assert audio_sources(page) == ["../mix.wav", "drums.wav", "no_drums.wav"]
    assert "share of the energy" in page and "Components" not in page


def test_a_file_fitted_on_excerpts_shows_summaries_only(tmp_path):
    path = excerpt(tmp_path / "long.wav", 0.0, 6.0)
    separate_file(path, tmp_path / "out", n_components=4, report=separation_report,
                  limits=Limits(fit_values=200_000, excerpt_frames=32))
    page = (tmp_path / "out" / "report.html").read_text()
    assert len(audio_sources(page)) == 3  # no component's clip
    assert "learned on excerpts" in page and 'id="rerun"' not in page


def test_a_refined_grouping_shows_its_components_and_no_group_command(tmp_path):
    sr = 8000
    t = np.arange(3 * sr) / sr
    y = 0.3 * np.sin(2 * np.pi * 220 * t) * (t < 2) + 0.3 * np.sin(2 * np.pi * 330 * t) * (t > 1)
    sf.write(tmp_path / "tones.wav", y, sr)  # sustained notes: the grouping is refined
    separate_file(tmp_path / "tones.wav", tmp_path / "out", n_fft=512, random_state=0,
                  report=separation_report)
    page = (tmp_path / "out" / "report.html").read_text()
    assert "refined into the 32" in page and len(audio_sources(page)) == 3 + 32
    assert 'id="rerun"' not in page  # --group names the first fit's components, not these


def test_a_name_that_is_not_utf8_gets_its_report_and_index(tmp_path, capsys):
    """The player links the very bytes of the name, the page shows it escaped."""
    folder = os.fsencode(tmp_path / "album")
    os.mkdir(folder)
    y, sr = sf.read(SAMPLE, frames=2 * 22050)
    sf.write(os.path.join(folder, b"caf\xe9.wav"), y, sr, format="WAV")
    sf.write(os.path.join(folder, b"ok.wav"), y, sr, format="WAV")
    out = tmp_path / "out"
    assert main(["separate", os.fsdecode(folder), "-o", str(out), "--iterations", "5", "--report",
                 "-q"]) == 0
    assert capsys.readouterr().err == ""
    page = open(os.path.join(os.fsencode(out), b"caf\xe9", b"report.html"), encoding="utf-8").read()
    assert "../../album/caf%E9.wav" in audio_sources(page) and "caf\\udce9" in page
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="caf%E9/report.html"' in index


def test_the_command_row_holds_every_option_given(tmp_path):
    """The models and --free of a supervised run, the grouping options of a blind one."""
    from audionmf import SourceModel

    path = excerpt(tmp_path / "mix.wav", 0.0, 2.0)
    SourceModel.learn(path, name="tone", n_components=4, max_iter=10, random_state=0).save(
        tmp_path / "tone.npz")
    assert main(["separate", path, "-o", str(tmp_path / "a"), "--model", str(tmp_path / "tone.npz"),
                 "--free", "2", "--iterations", "5", "--report", "-q"]) == 0
    page = (tmp_path / "a" / "mix" / "report.html").read_text()
    assert f"--model {tmp_path / 'tone.npz'} --free 2" in page
    assert main(["separate", path, "-o", str(tmp_path / "b"), "--sources", "3", "--rhythm", "1",
                 "--iterations", "5", "--report", "-q"]) == 0
    page = (tmp_path / "b" / "mix" / "report.html").read_text()
    assert "--report --sources 3 --rhythm 1</code>" in page  # the command that ran it
    assert re.search(r'id="rerun">[^<]*--components 24 --group', page)  # and the rerun, without them


def test_many_components_are_summarized(tmp_path):
    """Past 64 components the page shows no component one by one (each has a figure and
    a clip), so its size and the time to make it stay bounded."""
    path = excerpt(tmp_path / "mix.wav", 0.0, 2.0)
    separate_file(path, tmp_path / "out", n_components=65, max_iter=3, rhythm_weight=1.0,
                  report=separation_report)
    page = (tmp_path / "out" / "report.html").read_text()
    assert len(audio_sources(page)) == 3 and "65 components are more than a page can show" in page


def test_group_ranges():
    assert group_ranges([3, 0, 1, 2, 9, 11, 10]) == "0-3,9-11"
    assert group_ranges([4]) == "4"


def test_evaluate_report(tmp_path, capsys):
    rng = np.random.default_rng(0)
    (tmp_path / "ref").mkdir()
    (tmp_path / "est").mkdir()
    for name in ("a", "b"):
        y = rng.standard_normal(8000) * 0.1
        sf.write(tmp_path / "ref" / f"{name}.wav", y, 8000)
        sf.write(tmp_path / "est" / f"{name}.wav", y + 0.01 * rng.standard_normal(8000), 8000)
    assert main(["evaluate", str(tmp_path / "ref"), str(tmp_path / "est"), "--report"]) == 0
    page = (tmp_path / "est" / "report_scores.html").read_text()
    assert "<th>a</th>" in page and "<th>b</th>" in page and "SI-SDR" in page
    assert "SDR" in capsys.readouterr().out  # the table is still printed
    assert main(["evaluate", str(tmp_path / "ref"), str(tmp_path / "missing"), "--report"]) == 1
    assert not os.path.exists(tmp_path / "missing")


# ------------------------------------------------------------------ a real browser
def _chromium():
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    import _browser

    return _browser, _browser.find_chromium()


@pytest.mark.skipif(_chromium()[1] is None,
                    reason="no Chromium to open the report in (apt-get install chromium)")
def test_a_browser_plays_and_shows_everything(batch, tmp_path):
    _browser, executable = _chromium()
    folder, _ = batch
    with _browser.Browser(executable) as page:
        for report in ("first/report.html", "index.html"):
            page.events.clear()
            page.open((folder / "out" / report).as_uri())
            found = page.evaluate(_browser.CHECK_MEDIA)
            for audio in found["audio"]:
                assert audio["error"] is None and audio["readyState"] >= 3 and audio["duration"] > 0, audio
            for image in found["images"]:
                assert image["complete"] and image["width"] > 0, image
            assert not page.errors(), page.errors()
        page.open((folder / "out" / "first" / "report.html").as_uri())
        assert len(page.evaluate(_browser.CHECK_MEDIA)["audio"]) == 9
        # regrouping in the page rewrites the command
        command = page.evaluate("""(() => { const s = document.querySelector('select[data-k="0"]');
            s.value = s.value === "0" ? "1" : "0"; s.dispatchEvent(new Event("change"));
            return document.getElementById("rerun").textContent; })()""")
        assert "--group" in command and not page.errors()
        page.screenshot(tmp_path / "report.png")
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
