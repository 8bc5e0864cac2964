"""Separation metrics: BSS Eval v3 (SDR, SIR, SAR) and SI-SDR.

SDR, SIR and SAR are exactly those of :func:`mir_eval.separation.bss_eval_sources`
(BSS Eval v3, Vincent, Gribonval & Févotte 2006, doi:10.1109/TSA.2005.858005),
which this module calls. SI-SDR is the scale-invariant SDR of Le Roux, Wisdom,
Erdogan & Hershey (2019), doi:10.1109/ICASSP.2019.8683855, on zero-mean signals.

Multichannel signals are scored channel by channel and the scores averaged.
"""
import os
import warnings

import numpy as np

from ._validation import AudioError, ParameterError, check_audio
from .io import AUDIO_EXTENSIONS

__all__ = ["evaluate", "evaluate_folders", "si_sdr", "METRICS"]

METRICS = ("sdr", "sir", "sar", "si_sdr")
MIXTURE_NAME = "mix"


def si_sdr(reference, estimate):
    """Scale-invariant SDR in dB of one mono estimate (zero-mean, Le Roux et al. 2019)."""
    s = np.asarray(reference, dtype=np.float64)
    s_hat = np.asarray(estimate, dtype=np.float64)
    s = s - s.mean()
    s_hat = s_hat - s_hat.mean()
    alpha = np.dot(s_hat, s) / np.dot(s, s)
    target = alpha * s
    noise = s_hat - target
    return float(10 * np.log10(np.dot(target, target) / max(np.dot(noise, noise), 1e-300)))


def evaluate(references, estimates, sr=None, *, permutation=False, mixture=None):
    """Score estimated sources against the true ones.

    Parameters
    ----------
    references : dict of str -> np.ndarray [shape=(n_samples,) or (n_channels, n_samples)]
        True sources by name.
    estimates : dict of str -> np.ndarray
        Estimated sources. Without ``permutation`` they are paired with the
        references by name (names found on one side only are ignored); with
        it, their names are free and the assignment that maximizes the mean
        SIR (mir_eval's rule) is found; then there must be as many estimates
        as references.
    sr : int or None
        Sampling rate, only recorded in the result.
    permutation : bool
        Find the best assignment for blind outputs.
    mixture : np.ndarray or None
        The mixture; adds each source's SDR with the mixture as its estimate
        (``sdr_mix``) and the improvement ``sdri = sdr - sdr_mix``.

    Returns
    -------
    dict
        ``{"sources": {name: {"sdr", "sir", "sar", "si_sdr"[, "sdr_mix", "sdri"],
        "estimate": estimate_name}}, "mean": {...}, "ignored": {"references": [...],
        "estimates": [...]}, "sample_rate": sr}``, in dB. Estimates are cut or
        zero-padded to the references' length.
    """
    if not references:
        raise ParameterError("no reference sources")
    refs = {name: _as_channels(y, f"reference {name!r}") for name, y in references.items()}
    ests = {name: _as_channels(y, f"estimate {name!r}") for name, y in estimates.items()}
    n_channels = {y.shape[0] for y in refs.values()}
    if len(n_channels) > 1:
        raise ParameterError("the references have different channel counts")
    n_channels = n_channels.pop()
    length = max(y.shape[1] for y in refs.values())
    refs = {name: _fit_length(y, length) for name, y in refs.items()}
    ests = {name: _fit_length(y, length) for name, y in ests.items()}
    for name, y in list(refs.items()) + list(ests.items()):
        if y.shape[0] != n_channels:
            raise ParameterError(f"{name!r} has {y.shape[0]} channels, the references {n_channels}")

    if permutation:
        if len(ests) != len(refs):
            raise ParameterError(
                f"{len(refs)} references but {len(ests)} estimates: the best assignment "
                "needs as many of each"
            )
        ref_names, est_names = sorted(refs), sorted(ests)
        ignored = {"references": [], "estimates": []}
    else:
        ref_names = sorted(set(refs) & set(ests))
        est_names = ref_names
        ignored = {"references": sorted(set(refs) - set(ests)), "estimates": sorted(set(ests) - set(refs))}
        if not ref_names:
            raise ParameterError(
                f"no source names in common (references: {', '.join(sorted(refs))}; "
                f"estimates: {', '.join(sorted(ests)) or 'none'})"
            )
    for kind, names, signals in (("reference", ref_names, refs), ("estimate", est_names, ests)):
        for name in names:
            y = signals[name]
            _refuse_silence(y, f"{kind} {name!r}")
            if kind == "reference" and any(np.ptp(y[c]) == 0 for c in range(n_channels)):
                raise ParameterError(f"reference {name!r} is constant: SI-SDR is undefined for it")

    ref_stack = np.stack([refs[n] for n in ref_names])  # (n_src, n_channels, n_samples)
    est_stack = np.stack([ests[n] for n in est_names])
    sdr, sir, sar, perm = _bss_eval_per_channel(ref_stack, est_stack, permutation)
    scores = {}
    for i, name in enumerate(ref_names):
        j = perm[i]
        scores[name] = {
            "sdr": sdr[i],
            "sir": sir[i],
            "sar": sar[i],
            "si_sdr": float(np.mean([si_sdr(ref_stack[i, c], est_stack[j, c]) for c in range(n_channels)])),
            "estimate": est_names[j],
        }
    if mixture is not None:
        mix = _fit_length(_as_channels(mixture, "the mixture"), length)
        if mix.shape[0] != n_channels:
            raise ParameterError(f"the mixture has {mix.shape[0]} channels, the references {n_channels}")
        _refuse_silence(mix, "the mixture")
        mix_sdr, _, _, _ = _bss_eval_per_channel(ref_stack, np.stack([mix] * len(ref_names)), False)
        for i, name in enumerate(ref_names):
            scores[name]["sdr_mix"] = mix_sdr[i]
            scores[name]["sdri"] = scores[name]["sdr"] - mix_sdr[i]
    keys = [k for k in scores[ref_names[0]] if k != "estimate"]
    mean = {k: float(np.mean([scores[n][k] for n in ref_names])) for k in keys}
    return {"sources": scores, "mean": mean, "ignored": ignored, "sample_rate": sr}


def _refuse_silence(y, what):
    """ParameterError if a channel of ``y`` (shape (n_channels, n_samples)) is all zeros."""
    silent = [c for c in range(y.shape[0]) if not np.any(y[c])]
    if silent:
        where = "" if y.shape[0] == 1 else f" in channel {silent[0] + 1} of {y.shape[0]}"
        raise ParameterError(f"{what} is silent{where}: BSS Eval is undefined for it")


def evaluate_folders(reference_dir, estimate_dir, *, permutation=False):
    """:func:`evaluate` on two folders of audio files, paired by file stem.

    A file named ``mix`` (any audio extension) in the reference folder is used
    as the mixture. All files must share one sample rate.

    Raises
    ------
    AudioError
        A folder is missing or a file cannot be read or is unusable.
    ParameterError
        The folders cannot be compared (no common names, sample rates differ...).
    """
    from .io import load

    ref_files = _audio_files(reference_dir)
    est_files = _audio_files(estimate_dir)
    if not ref_files:
        raise AudioError(f"{reference_dir}: no audio files")
    if not est_files:
        raise AudioError(f"{estimate_dir}: no audio files")
    mixture_path = ref_files.pop(MIXTURE_NAME, None)
    rates = {}

    def read(path):
        y, rate = load(path, dtype=np.float64)
        rates[path] = rate
        return y

    if not permutation:
        # Only files with a partner are read.
        common = set(ref_files) & set(est_files)
        if not common:
            raise ParameterError(
                f"no file names in common between {reference_dir} ({', '.join(sorted(ref_files))}) "
                f"and {estimate_dir} ({', '.join(sorted(est_files))})"
            )
    references = {name: read(path) for name, path in ref_files.items()}
    estimates = {
        name: read(path) for name, path in est_files.items() if permutation or name in ref_files
    }
    mixture = read(mixture_path) if mixture_path else None
    if len(set(rates.values())) > 1:
        listing = ", ".join(f"{os.path.basename(p)} {r} Hz" for p, r in rates.items())
        raise ParameterError(f"the files have different sample rates ({listing})")
    result = evaluate(
        references, estimates, next(iter(rates.values())), permutation=permutation, mixture=mixture
    )
    result["ignored"]["estimates"] = sorted(set(est_files) - set(estimates)) + result["ignored"]["estimates"]
    if mixture_path:
        result["mixture"] = os.path.basename(mixture_path)
    return result


def _audio_files(folder):
    folder = os.fspath(folder)
    if not os.path.exists(folder):
        raise AudioError(f"{folder}: no such folder")
    if not os.path.isdir(folder):
        raise AudioError(f"{folder}: is not a folder")
    files = {}
    for entry in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(entry)
        path = os.path.join(folder, entry)
        if ext.lower() in AUDIO_EXTENSIONS and os.path.isfile(path) and not entry.startswith("."):
            if stem in files:
                raise ParameterError(f"{folder}: two files for source {stem!r}")
            files[stem] = path
    return files


def _as_channels(y, name):
    y = check_audio(np.asarray(y, dtype=np.float64), name)
    return y[None] if y.ndim == 1 else y


def _fit_length(y, length):
    if y.shape[1] >= length:
        return y[:, :length]
    return np.pad(y, ((0, 0), (0, length - y.shape[1])))


def _bss_eval_per_channel(refs, ests, permutation):
    """mir_eval's bss_eval_sources on each channel; scores averaged over channels.

    The permutation is decided on the first channel and kept for the others.
    """
    import mir_eval

    n_src, n_channels, _ = refs.shape
    totals = np.zeros((3, n_src))
    perm = np.arange(n_src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated in 0.8, kept < 0.9
        for c in range(n_channels):
            est_c = ests[perm, c] if c else ests[:, c]
            sdr, sir, sar, p = mir_eval.separation.bss_eval_sources(
                refs[:, c], est_c, compute_permutation=permutation and c == 0
            )
            if c == 0:
                perm = np.asarray(p)
                # mir_eval returns scores in reference order with perm[i] = estimate of reference i
            totals += np.stack([sdr, sir, sar])
    totals /= n_channels
    return totals[0].tolist(), totals[1].tolist(), totals[2].tolist(), perm.tolist()
