import json
import warnings

import mir_eval
import numpy as np
import pytest
import soundfile as sf

from audionmf import ParameterError, evaluate
from audionmf.cli import main
from audionmf.evaluate import evaluate_folders, si_sdr

SR = 8000


@pytest.fixture
def sources(rng):
    t = np.arange(2 * SR) / SR
    a = 0.3 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 0.7 * t))
    b = 0.2 * rng.standard_normal(t.size)
    return {"tone": a, "noise": b}


def estimates_of(sources, rng, leak=0.1, noise=0.02):
    a, b = sources["tone"], sources["noise"]
    return {
        "tone": a + leak * b + noise * rng.standard_normal(a.size),
        "noise": b + 2 * leak * a + noise * rng.standard_normal(a.size),
    }


def reference_scores(refs, ests, permutation=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return mir_eval.separation.bss_eval_sources(refs, ests, compute_permutation=permutation)


def test_agrees_with_mir_eval(sources, rng):
    ests = estimates_of(sources, rng)
    result = evaluate(sources, ests, SR)
    names = sorted(sources)
    sdr, sir, sar, _ = reference_scores(
        np.stack([sources[n] for n in names]), np.stack([ests[n] for n in names])
    )
    for i, name in enumerate(names):
        got = result["sources"][name]
        assert got["sdr"] == pytest.approx(sdr[i], abs=1e-9)
        assert got["sir"] == pytest.approx(sir[i], abs=1e-9)
        assert got["sar"] == pytest.approx(sar[i], abs=1e-9)
    assert result["mean"]["sdr"] == pytest.approx(np.mean(sdr))


def test_better_estimates_score_higher(sources, rng):
    worse = evaluate(sources, estimates_of(sources, rng, leak=0.3))
    better = evaluate(sources, estimates_of(sources, rng, leak=0.03))
    for metric in ("sdr", "sir", "si_sdr"):
        assert better["mean"][metric] > worse["mean"][metric] + 3


def test_si_sdr_known_answer(rng):
    s = rng.standard_normal(20000)
    s -= s.mean()
    n = rng.standard_normal(20000)
    n -= n.mean()
    n -= np.dot(n, s) / np.dot(s, s) * s  # orthogonal to s
    n *= 0.1 * np.linalg.norm(s) / np.linalg.norm(n)  # 20 dB below
    assert si_sdr(s, s + n) == pytest.approx(20.0, abs=1e-9)
    assert si_sdr(s, 3 * (s + n)) == pytest.approx(20.0, abs=1e-9)  # scale does not matter


def test_permutation_finds_the_assignment(sources, rng):
    ests = estimates_of(sources, rng)
    blind = {"source1": ests["noise"], "source2": ests["tone"]}
    result = evaluate(sources, blind, permutation=True)
    assert result["sources"]["tone"]["estimate"] == "source2"
    assert result["sources"]["noise"]["estimate"] == "source1"
    named = evaluate(sources, ests)
    for name in sources:
        assert result["sources"][name]["sdr"] == pytest.approx(named["sources"][name]["sdr"])


def test_mixture_gives_the_improvement(sources, rng):
    mix = sources["tone"] + sources["noise"]
    result = evaluate(sources, estimates_of(sources, rng), mixture=mix)
    names = sorted(sources)
    refs = np.stack([sources[n] for n in names])
    mix_sdr, _, _, _ = reference_scores(refs, np.stack([mix, mix]))
    for i, name in enumerate(names):
        got = result["sources"][name]
        assert got["sdr_mix"] == pytest.approx(mix_sdr[i])
        assert got["sdri"] == pytest.approx(got["sdr"] - mix_sdr[i])


def test_lengths_are_aligned(sources, rng):
    ests = estimates_of(sources, rng)
    short = {k: v[:-100] for k, v in ests.items()}
    padded = {k: np.r_[v[:-100], np.zeros(100)] for k, v in ests.items()}
    assert evaluate(sources, short)["mean"] == pytest.approx(evaluate(sources, padded)["mean"])


def test_stereo_is_scored_per_channel(sources, rng):
    ests = estimates_of(sources, rng)
    stereo_refs = {k: np.stack([v, v]) for k, v in sources.items()}
    stereo_ests = {k: np.stack([v, v]) for k, v in ests.items()}
    mono = evaluate(sources, ests)
    stereo = evaluate(stereo_refs, stereo_ests)
    assert stereo["mean"]["sdr"] == pytest.approx(mono["mean"]["sdr"])


def test_unpaired_names_are_ignored_and_listed(sources, rng):
    ests = estimates_of(sources, rng)
    ests["extra"] = ests["tone"]
    refs = dict(sources, bass=sources["tone"] * 0.5)
    result = evaluate(refs, ests)
    assert sorted(result["sources"]) == ["noise", "tone"]
    assert result["ignored"] == {"references": ["bass"], "estimates": ["extra"]}


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda r, e: (r, {"other": e["tone"]}), "no source names in common"),
        (lambda r, e: (dict(r, tone=0 * r["tone"]), e), "reference 'tone' is silent"),
        (lambda r, e: (r, dict(e, tone=0 * e["tone"])), "estimate 'tone' is silent"),
    ],
)
def test_bad_comparisons(sources, rng, change, match):
    refs, ests = change(sources, estimates_of(sources, rng))
    with pytest.raises(ParameterError, match=match):
        evaluate(refs, ests)


def test_permutation_needs_as_many_estimates(sources, rng):
    with pytest.raises(ParameterError, match="2 references but 1 estimates"):
        evaluate(sources, {"x": sources["tone"]}, permutation=True)


def write_folder(folder, signals, sr=SR):
    folder.mkdir(parents=True)
    for name, y in signals.items():
        sf.write(folder / f"{name}.wav", y, sr, subtype="FLOAT")


def test_cli_json_agrees_with_mir_eval(tmp_path, sources, rng, capsys):
    ests = estimates_of(sources, rng)
    write_folder(tmp_path / "ref", dict(sources, mix=sources["tone"] + sources["noise"]))
    write_folder(tmp_path / "est", {"source1": ests["noise"], "source2": ests["tone"]})
    code = main(["evaluate", str(tmp_path / "ref"), str(tmp_path / "est"), "--json", "--permutation"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    names = sorted(sources)
    refs = np.stack([sf.read(tmp_path / "ref" / f"{n}.wav")[0] for n in names])
    est_read = np.stack([sf.read(tmp_path / "est" / f"source{i}.wav")[0] for i in (1, 2)])
    sdr, sir, sar, perm = reference_scores(refs, est_read, permutation=True)
    for i, name in enumerate(names):
        assert result["sources"][name]["sdr"] == pytest.approx(sdr[i], abs=0.01)
        assert result["sources"][name]["sir"] == pytest.approx(sir[i], abs=0.01)
        assert result["sources"][name]["sar"] == pytest.approx(sar[i], abs=0.01)
        assert result["sources"][name]["estimate"] == f"source{perm[i] + 1}"
        assert "sdri" in result["sources"][name]
    assert result["mixture"] == "mix.wav"


def test_cli_json_is_strict_when_a_score_is_infinite(tmp_path, sources, rng, capsys):
    """A source scored alone has no interference: its SIR is infinite, which strict
    JSON cannot hold (json.dumps would write Infinity): it is written as null."""
    write_folder(tmp_path / "ref", sources)
    write_folder(tmp_path / "est", {"tone": estimates_of(sources, rng)["tone"]})
    assert main(["evaluate", str(tmp_path / "ref"), str(tmp_path / "est"), "--json"]) == 0

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    result = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert result["sources"]["tone"]["sir"] is None and result["mean"]["sir"] is None
    assert np.isfinite(result["sources"]["tone"]["sdr"])


def test_a_silent_mixture_is_refused(sources, rng):
    ests = estimates_of(sources, rng)
    with pytest.raises(ParameterError, match="the mixture is silent: BSS Eval is undefined"):
        evaluate(sources, ests, SR, mixture=np.zeros_like(sources["tone"]))


def test_cli_table(tmp_path, sources, rng, capsys):
    write_folder(tmp_path / "ref", dict(sources, mix=sources["tone"] + sources["noise"]))
    write_folder(tmp_path / "est", dict(estimates_of(sources, rng), extra=sources["tone"]))
    assert main(["evaluate", str(tmp_path / "ref"), str(tmp_path / "est")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["source", "SDR", "SIR", "SAR", "SI-SDR", "SDRi"]
    assert [line.split()[0] for line in out[1:4]] == ["noise", "tone", "mean"]
    assert "no reference for: extra" in out
    assert "mixture: mix.wav" in out


def test_cli_errors(tmp_path, sources, capsys):
    write_folder(tmp_path / "ref", sources)
    write_folder(tmp_path / "est44", {"tone": sources["tone"]}, sr=44100)
    write_folder(tmp_path / "silent", {"tone": 0 * sources["tone"]})
    cases = [
        (tmp_path / "missing", "no such folder"),
        (tmp_path / "est44", "different sample rates"),
        (tmp_path / "silent", "estimate 'tone' is silent"),
    ]
    for est, expected in cases:
        assert main(["evaluate", str(tmp_path / "ref"), str(est)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
    assert main(["evaluate", str(tmp_path / "ref")]) == 2


def test_folder_with_no_common_names(tmp_path, sources):
    write_folder(tmp_path / "ref", sources)
    write_folder(tmp_path / "est", {"source1": sources["tone"]})
    with pytest.raises(ParameterError, match="no file names in common"):
        evaluate_folders(tmp_path / "ref", tmp_path / "est")


def test_stereo_reference_with_a_silent_channel(sources, rng):
    refs = {k: np.stack([v, 0 * v]) for k, v in sources.items()}
    ests = {k: np.stack([v, v]) for k, v in estimates_of(sources, rng).items()}
    with pytest.raises(ParameterError, match="silent in channel 2 of 2"):
        evaluate(refs, ests)


def test_constant_reference_is_refused(sources, rng):
    refs = dict(sources, tone=np.full_like(sources["tone"], 0.3))
    with pytest.raises(ParameterError, match="constant"):
        evaluate(refs, estimates_of(sources, rng))
