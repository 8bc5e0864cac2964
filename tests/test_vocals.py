"""--two-stems vocals: the source/filter model's properties, the melody, its files and the CLI."""
import os

import numpy as np
import pytest
import soundfile as sf

import audionmf
from audionmf import ParameterError, melody, separate
from audionmf import sourcefilter as sfm
from audionmf.cli import main
from audionmf.limits import Limits
from audionmf.modes import vocals as vocals_mode
from audionmf.modes.vocals import melody_csv, read_melody
from audionmf.separate import configure

SR = 22050


def harmonic(f0, sr=SR, n_partials=12, vibrato=0.0):
    """A voice-like harmonic tone following ``f0`` (Hz per sample), partials falling 6 dB/octave."""
    phase = 2 * np.pi * np.cumsum(f0) / sr
    if vibrato:
        phase += vibrato * np.sin(2 * np.pi * 5.5 * np.arange(len(f0)) / sr)
    return sum(np.sin(k * phase) / k for k in range(1, n_partials + 1) if k * f0.max() < sr / 2)


def song(seconds=3.0, sr=SR):
    """A lead (a rising glide, then notes, with a rest) over a sustained C major chord."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = np.where(t < seconds / 2, 220 * 2 ** (t / seconds * 2 * 5 / 12),
                  np.where(t < 0.75 * seconds, 330.0, 294.0))
    lead = harmonic(f0, sr)
    lead[(t > 0.9 * seconds)] = 0.0  # a rest
    chord = sum(0.12 * np.sin(2 * np.pi * fc * t) + 0.05 * np.sin(4 * np.pi * fc * t)
                for fc in (130.81, 164.81, 196.0))
    return lead + chord, f0, t


def test_the_model_tracks_a_synthetic_lead_within_a_quarter_tone():
    """The source/filter fit and the Viterbi path, with as many band components as the chord needs."""
    y, f0, t = song()
    X = audionmf.stft(y, n_fft=1024, hop_length=256)
    V = np.maximum((np.abs(X) ** 2 / np.max(np.abs(X) ** 2)).astype(np.float32), sfm.FLOOR)
    f0s = sfm.f0_grid(70, 1000, 4)
    W_F0 = sfm.harmonic_templates(f0s, sr=SR, n_fft=1024)
    W_filter = sfm.smooth_filters(np.arange(V.shape[0]) * SR / 1024, 30)
    factors = sfm.SourceFilter.start(W_F0, W_filter, 3, V.shape[1], np.random.default_rng(0),
                                     scale=float(V.mean()))
    sfm.fit(V, factors, 60)
    path = f0s[sfm.track(sfm.comb_power(factors), f0s, jump_cost=0.2, steps_per_semitone=4)]
    times = audionmf.frame_times(V.shape[1], sr=SR, hop_length=256)
    truth = np.interp(times, t, f0)
    sounding = (times > 0.05) & (times < 0.88 * t[-1])
    cents = 1200 * np.abs(np.log2(path[sounding] / truth[sounding]))
    assert np.percentile(cents, 95) < 50


def test_melody_of_a_synthetic_lead():
    y, f0, t = song()
    track = melody(y, SR, random_state=0)
    assert track.shape[1] == 2
    assert np.all(np.diff(track[:, 0]) > 0)
    truth = np.interp(track[:, 0], t, f0)
    inside = (track[:, 0] > 0.05) & (track[:, 0] < 0.88 * t[-1])  # the lead sounds, away from edges
    voiced = inside & (track[:, 1] > 0)
    assert voiced.sum() > 0.9 * inside.sum()
    cents = 1200 * np.abs(np.log2(track[voiced, 1] / truth[voiced]))
    assert np.median(cents) < 25 and np.mean(cents < 50) > 0.75


@pytest.mark.parametrize("f0, n_partials", [(220.0, 12), (247.0, 9), (330.0, 12)])
def test_a_noise_free_steady_tone_is_tracked_at_its_fundamental(f0, n_partials):
    # Synthetic leads (a synth, a MIDI render) have empty bins between partials.
    t = np.arange(2 * SR) / SR
    y = 0.3 * harmonic(np.full(len(t), f0), n_partials=n_partials)
    track = melody(y, SR, random_state=0)[5:-5, 1]
    assert np.mean(track > 0) > 0.9
    assert np.all(np.abs(12 * np.log2(track[track > 0] / f0)) < 0.25)


def test_the_divergence_never_increases():
    rng = np.random.default_rng(0)
    y, _, _ = song(1.5)
    X = audionmf.stft(y, n_fft=1024, hop_length=256)
    V = np.maximum((np.abs(X) ** 2 / np.max(np.abs(X) ** 2)).astype(np.float32), sfm.FLOOR)
    f0s = sfm.f0_grid(100, 1000, 2)
    W_F0 = sfm.harmonic_templates(f0s, sr=SR, n_fft=1024)
    W_filter = sfm.smooth_filters(np.arange(V.shape[0]) * SR / 1024, 12)
    for allowed in (None, (rng.random((len(f0s) + 1, V.shape[1])) < 0.3).astype(np.float32)):
        factors = sfm.SourceFilter.start(W_F0, W_filter, 6, V.shape[1], rng, scale=float(V.mean()))
        losses = []
        for _ in range(25):
            sfm.fit(V, factors, 1, allowed=allowed)
            losses.append(sfm.is_divergence(V, sfm.model(factors)))
        assert np.all(np.diff(losses) <= 1e-5 * np.abs(losses[:-1])), losses
        if allowed is not None:
            assert not np.any(factors.H_F0[allowed == 0])


def test_viterbi_follows_the_salience_and_pays_for_jumps():
    salience = np.full((10, 6), 0.01)
    salience[2, :3] = 1.0
    salience[7, 3:] = 1.0
    salience[8, 4] = 1.1  # a one-frame blip beside the path: not worth two moves
    path = sfm.track(salience, np.arange(10.0), jump_cost=0.5, steps_per_semitone=1)
    assert path.tolist() == [2, 2, 2, 7, 7, 7]


def test_a_held_note_loses_salience_to_a_moving_lead():
    # a band's note held on F0 state 2 throughout, a lead that moves through states 5-9,
    # a little weaker: the held note wins the raw salience, the moving lead the discounted
    salience = np.full((10, 20), 0.01)
    salience[2] = 1.0
    for t in range(20):
        salience[5 + t % 5, t] = 0.8
    discounted = sfm.discount_held(salience, 11, 0.5)
    assert np.all(discounted > 0)
    assert np.all(salience.argmax(axis=0) == 2)
    assert np.all(discounted.argmax(axis=0) == 5 + np.arange(20) % 5)


def test_stereo_stems_sum_to_the_input():
    y, _, _ = song(2.0)
    stereo = np.stack([y, 0.5 * y + 0.01 * np.sin(np.arange(y.size))]).astype(np.float32)
    out = separate(stereo, SR, two_stems="vocals", random_state=0)
    assert list(out) == ["vocals", "no_vocals"]
    assert out["vocals"].shape == stereo.shape and out["vocals"].dtype == np.float32
    np.testing.assert_allclose(out["vocals"] + out["no_vocals"], stereo, atol=1e-6)
    # the lead is louder in the vocals than in the rest
    assert np.sum(out["vocals"] ** 2) > np.sum(out["no_vocals"] ** 2)


def test_long_file_path_covers_every_frame_and_sums_to_the_input():
    y, _, _ = song(3.0, sr=8000)
    limits = Limits(block_values=2**13, fit_values=2**13, excerpt_frames=32)
    out = separate(y, 8000, two_stems="vocals", random_state=0, limits=limits)
    np.testing.assert_allclose(out["vocals"] + out["no_vocals"], y, atol=1e-9)
    track = melody(y, 8000, random_state=0, limits=limits)
    hop = int(round(256 * 8000 / 22050))
    assert track.shape[0] == 1 + y.size // hop
    assert np.mean(track[:, 1] > 0) > 0.5


def test_melody_is_the_melody_a_separation_writes(tmp_path):
    """melody() fits without masking or synthesizing: the same melody as the file
    that separate_file writes, block by block on a long file's path too (two blocks:
    a block spans at least 8 melody margins, 1032 frames, 12 s at 8 kHz)."""
    y, _, _ = song(14.0, sr=8000)
    path = tmp_path / "song.wav"
    sf.write(path, (0.5 * y / np.abs(y).max()).astype(np.float32), 8000, subtype="FLOAT")
    y, _ = sf.read(path)
    for limits in (None, Limits(block_values=2**13, fit_values=2**13, excerpt_frames=32)):
        folder = tmp_path / ("whole" if limits is None else "blocks")
        audionmf.separate_file(path, folder, two_stems="vocals", melody_out="melody.csv",
                               random_state=0, limits=limits)
        written = read_melody(folder / "melody.csv")
        np.testing.assert_allclose(melody(y, 8000, random_state=0, limits=limits), written, atol=1e-3)


def test_melody_csv_round_trip(tmp_path):
    track = np.column_stack([np.arange(5) * 0.0116, [0.0, 220.0, 221.5, 0.0, 440.25]])
    path = tmp_path / "melody.csv"
    path.write_bytes(melody_csv(track))
    assert path.read_text().splitlines()[0] == "time_s,f0_hz"
    np.testing.assert_allclose(read_melody(path), track, atol=1e-3)


def test_melody_csv_from_a_spreadsheet_is_read(tmp_path):
    """A byte-order mark (Excel's 'CSV UTF-8') and CRLF line ends are read as plain CSV."""
    path = tmp_path / "melody.csv"
    path.write_bytes(b"\xef\xbb\xbftime_s,f0_hz\r\n0.0,220\r\n0.5,0\r\n")
    np.testing.assert_array_equal(read_melody(path), [[0.0, 220.0], [0.5, 0.0]])
    path.write_bytes(b"\xef\xbb\xbf0.0,220\n")
    np.testing.assert_array_equal(read_melody(path), [[0.0, 220.0]])


@pytest.mark.parametrize("data, problem", [
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "an audio file, not a melody"),
    (b"fLaC\x00\x00\x00\x22", "an audio file, not a melody"),
    (bytes(range(128, 256)), "not a text file"),
    (b"0" * 5000, "line 1: over 1000 characters"),
], ids=["wav", "flac", "binary", "one endless line"])
def test_files_that_are_not_melodies_say_so(tmp_path, data, problem):
    path = tmp_path / "given.csv"
    path.write_bytes(data)
    with pytest.raises(ParameterError, match=f"given.csv: {problem}"):
        read_melody(path)


def test_a_complex_melody_is_refused():
    with pytest.raises(ParameterError, match="melody: expected rows of time"):
        melody(np.zeros(SR), SR, melody=np.array([[0.0, 220 + 1j]]))


def test_a_given_melody_is_used(tmp_path):
    y, _, _ = song(2.0)
    given = np.array([[0.0, 0.0], [0.5, 262.0], [1.0, 262.0], [1.5, 0.0]])
    track = melody(y, SR, melody=given, random_state=0)
    assert set(np.unique(track[:, 1])) <= {0.0, 262.0}
    assert np.all(track[(track[:, 0] > 0.6) & (track[:, 0] < 1.0), 1] == 262.0)


@pytest.mark.parametrize("text, problem", [
    ("time_s,f0_hz\n0.0,220\n0.1,abc\n", "line 3: expected time_s,f0_hz"),
    ("0.0,220\n0.1,nan\n", "row 2 is not a finite number"),
    ("0.0,220\n0.1,-5\n", "row 2: negative F0"),
    ("0.0,220\n0.2,220\n0.1,220\n", "row 3: times out of order"),
    ("0.0,220,3\n", "line 1: expected"),
    ("time_s,f0_hz\n", "no melody"),
    ("0.0,5\n1.0,5\n", "row 1: F0 5 Hz is outside the lead's range"),
    ("0.0,220\n1.0,4000\n", "row 2: F0 4000 Hz is outside"),
])
def test_bad_melody_files_are_refused(tmp_path, text, problem):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ParameterError, match=problem):
        read_melody(path)
    with pytest.raises(ParameterError, match="bad.csv"):
        separate(np.random.default_rng(0).standard_normal(SR), SR, two_stems="vocals", melody=str(path))


def test_separate_file_never_overwrites_the_melody_given(tmp_path):
    """--melody-out named as the --melody file, in the output folder: refused before the fit."""
    y, _, _ = song(1.0)
    path, folder = tmp_path / "song.wav", tmp_path / "song"
    sf.write(path, y.astype(np.float32), SR)
    folder.mkdir()
    given = folder / "melody.csv"
    given.write_text("0.0,220\n0.5,220\n")
    with pytest.raises(audionmf.AudioError, match="melody.csv is the melody file; choose another folder"):
        audionmf.separate_file(path, folder, two_stems="vocals", melody=str(given), melody_out="melody.csv")
    assert given.read_text() == "0.0,220\n0.5,220\n" and os.listdir(folder) == ["melody.csv"]


def test_a_melody_with_no_voiced_row_within_the_input_is_refused():
    y, _, _ = song(1.0)
    late = np.array([[5.0, 220.0], [6.0, 220.0]])  # after the input's end
    with pytest.raises(ParameterError, match=r"no voiced row within the input \(0 to 1 s\)"):
        separate(y, SR, two_stems="vocals", melody=late)
    unvoiced = np.array([[0.0, 0.0], [0.5, 0.0]])
    with pytest.raises(ParameterError, match="no voiced row"):
        melody(y, SR, melody=unvoiced)


def test_a_rate_beyond_audio_is_refused_before_work():
    """Past 768 kHz (MAX_SR) the lead's combs would fill memory (11 GB at 3 MHz)."""
    y = np.random.default_rng(0).standard_normal(4096)
    with pytest.raises(ParameterError, match="two_stems='vocals': a sampling rate of at most 768000 Hz"):
        separate(y, 3_000_000, two_stems="vocals")


def test_melody_options_need_vocals():
    with pytest.raises(ParameterError, match="melody"):
        separate(np.random.default_rng(0).standard_normal(SR), SR, melody=np.array([[0.0, 100.0]]))
    with pytest.raises(ParameterError, match="melody_out"):
        separate(np.random.default_rng(0).standard_normal(SR), SR, two_stems="vocals",
                 melody_out="../x.csv")


def test_cli_writes_stems_melody_and_plot(tmp_path, capsys):
    y, _, _ = song(2.0)
    path = tmp_path / "song.wav"
    sf.write(path, (0.5 * y / np.abs(y).max()).astype(np.float32), SR, subtype="FLOAT")
    y, _ = sf.read(path)
    out = tmp_path / "out"
    assert main(["separate", str(path), "-o", str(out), "--two-stems", "vocals",
                 "--melody-out", "melody.csv", "--plot", "--quiet"]) == 0
    folder = out / "song"
    assert sorted(os.listdir(folder)) == ["melody.csv", "no_vocals.wav", "separation.png", "vocals.wav"]
    vocals, _ = sf.read(folder / "vocals.wav")
    rest, _ = sf.read(folder / "no_vocals.wav")
    np.testing.assert_allclose(vocals + rest, y, atol=1e-6)
    track = read_melody(folder / "melody.csv")
    assert np.mean(track[:, 1] > 0) > 0.5
    # the melody written is taken back, and written again the same (the separation is
    # close, not the same: the given melody's fit starts afresh; README, "--melody");
    # --skip-existing sees the melody among the outputs
    again = tmp_path / "again"
    assert main(["separate", str(path), "-o", str(again), "--two-stems", "vocals",
                 "--melody", str(folder / "melody.csv"), "--melody-out", "melody.csv", "--quiet"]) == 0
    assert (again / "song" / "melody.csv").read_bytes() == (folder / "melody.csv").read_bytes()
    assert main(["separate", str(path), "-o", str(out), "--two-stems", "vocals",
                 "--melody-out", "melody.csv", "--skip-existing"]) == 0
    assert "1 of 1 inputs already separated" in capsys.readouterr().err


def test_cli_bad_melody_is_one_line(tmp_path, capsys):
    y, _, _ = song(1.0)
    path = tmp_path / "song.wav"
    sf.write(path, (0.5 * y / np.abs(y).max()).astype(np.float32), SR)
    bad = tmp_path / "bad.csv"
    bad.write_text("0.0,220\n0.1,-1\n")
    code = main(["separate", str(path), "-o", str(tmp_path / "out"), "--two-stems", "vocals",
                 "--melody", str(bad), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "bad.csv" in err[0] and "negative F0" in err[0]
    assert not (tmp_path / "out" / "song").exists()
    assert main(["separate", str(path), str(path.with_name("other.wav")), "--two-stems", "vocals",
                 "--melody", str(bad)]) == 2
    assert "--melody is one input's" in capsys.readouterr().err
    assert main(["separate", str(path), "--two-stems", "vocals", "--melody-out", "sub/m.csv"]) == 2
    assert "--melody-out" in capsys.readouterr().err


def test_the_melody_is_drawn_over_the_mixture_with_gaps_where_unvoiced():
    from audionmf import plot

    spectra = {"mixture": np.ones((513, 100)), "vocals": np.ones((513, 100))}
    track = np.array([[0.0, 0.0], [0.5, 200.0], [1.0, 210.0]])
    fig = plot.source_spectrograms(spectra, SR, hop_length=256, n_fft=1024, melody=track)
    ax = fig.axes[0]
    line = ax.lines[0]
    assert np.isnan(line.get_ydata()[0]) and line.get_ydata()[2] == 210.0
    assert ax.get_xlim()[1] < 1.2  # the spectrogram's extent, not the line's margins
    with pytest.raises(ParameterError, match="melody"):
        plot.melody_line(np.ones((3, 3)))


class _Model:
    """Factors whose lead and band are given spectrograms (what the vote reads)."""

    def __init__(self, lead, band):
        self._lead, self._band = lead, band

    def lead(self):
        return self._lead

    def accompaniment(self):
        return self._band


def test_the_vote_gives_each_part_its_sharpened_share_of_the_model_mask():
    """Two parts on disjoint bins and frames: the model gives the lead 70% of the first
    and 20% of the second; the vote gives each part s**2 / (s**2 + (1 - s)**2) of it."""
    V = np.full((20, 40), 1e-9, dtype=np.float32)
    V[:10, :20] = 1.0
    V[10:, 20:] = 1.0
    share = np.where(np.arange(20)[:, None] < 10, 0.7, 0.2) * np.ones((1, 40))
    model = _Model((share * V).astype(np.float32), ((1 - share) * V).astype(np.float32))
    mode = configure(SR, {"two_stems": "vocals", "random_state": 0})
    W, H_lead, H_band = mode._vote(V, model, 2)
    H = H_lead + H_band
    np.testing.assert_allclose(W @ H, np.sqrt(V), atol=1e-3)  # the two parts are found
    parts = H.sum(axis=1)
    got = np.sort(H_lead.sum(axis=1) / parts)
    expected = np.sort([0.7**2 / (0.7**2 + 0.3**2), 0.2**2 / (0.2**2 + 0.8**2)])
    np.testing.assert_allclose(got, expected, atol=1e-3)
    # With the templates fixed (a long file's blocks), the same split.
    W2, H_lead2, H_band2 = mode._vote(V, model, W)
    np.testing.assert_array_equal(W2, W)
    np.testing.assert_allclose(np.sort(H_lead2.sum(axis=1) / (H_lead2 + H_band2).sum(axis=1)), expected, atol=1e-3)
