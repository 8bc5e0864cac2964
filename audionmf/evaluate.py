"""Separation metrics: BSS Eval v3 (SDR, SIR, SAR) and SI-SDR.

SDR, SIR and SAR are those of :func:`mir_eval.separation.bss_eval_sources` 0.8
(BSS Eval v3, Vincent, Gribonval & Févotte 2006, doi:10.1109/TSA.2005.858005):
the estimate is projected on the references delayed by 0 to 511 samples. They are
computed here, step for step as mir_eval does (the tests compare them), rather
than by calling it: mir_eval 0.8.2 catches ``np.linalg.linalg.LinAlgError``, a
name numpy 2 removed, so a singular system or a Ctrl-C in its solver became an
AttributeError; its lstsq fallback scored references that are copies of each
other as if they were separable; and it deprecates the function (gone in 0.9).
Here the references' Gram matrix is built and factored once per channel, not once
per pair (with the permutation, 3 factorizations for 2 sources instead of 8).
SI-SDR is the scale-invariant SDR of Le Roux, Wisdom, Erdogan & Hershey (2019),
doi:10.1109/ICASSP.2019.8683855, on zero-mean signals.

All four scores are invariant to the scale of every reference and estimate (the
projections depend only on the span of the references), so each signal is
divided by its peak before scoring: samples anywhere in float64's range (1e-300
to 1e300) give the scores of the same signals at full scale, where sums of
squares would otherwise underflow or overflow.

Multichannel signals are scored channel by channel and the scores averaged.
"""
import itertools
import os

import numpy as np

from ._validation import AudioError, ParameterError, check_audio, check_flag, check_sample_rate
from .io import AUDIO_EXTENSIONS, load

__all__ = ["evaluate", "evaluate_folders", "si_sdr", "score_columns", "METRICS"]

METRICS = ("sdr", "sir", "sar", "si_sdr")
MIXTURE_NAME = "mix"
_TITLES = {"sdr": "SDR", "sir": "SIR", "sar": "SAR", "si_sdr": "SI-SDR", "sdri": "SDRi"}


def score_columns(result):
    """``(key, title)`` of the scores in a result of :func:`evaluate`, in table order:
    the metrics, then the SDR improvement where a mixture was given."""
    keys = METRICS + (("sdri",) if "sdri" in result["mean"] else ())
    return [(key, _TITLES[key]) for key in keys]


def si_sdr(reference, estimate):
    """Scale-invariant SDR in dB of one mono estimate (zero-mean, Le Roux et al. 2019).

    ``-inf`` for an estimate that holds nothing of the reference (a constant one);
    a constant reference is refused, as SI-SDR is undefined for it.
    """
    s = _unit_peak(_as_channels(reference, "reference"))
    s_hat = _unit_peak(_as_channels(estimate, "estimate"))
    if s.shape != s_hat.shape or s.shape[0] != 1:
        raise ParameterError(f"si_sdr scores one mono signal against another of the same length, "
                             f"got shapes {np.shape(reference)} and {np.shape(estimate)}")
    s, s_hat = s[0] - s[0].mean(), s_hat[0] - s_hat[0].mean()
    energy = np.dot(s, s)
    if energy == 0:
        raise ParameterError("the reference is constant: SI-SDR is undefined for it")
    target = (np.dot(s_hat, s) / energy) * s
    noise = s_hat - target
    return _db(np.dot(target, target), np.dot(noise, noise))


def _mean(values):
    """The mean of scores in dB; NaN, without a warning, for one of +inf and one of -inf."""
    values = np.asarray(values, dtype=np.float64)
    if np.isposinf(values).any() and np.isneginf(values).any():
        return float("nan")
    return float(np.mean(values))


def _db(num, den):
    """10 log10(num / den): +inf for a zero ``den``, -inf for a zero ``num``, no warnings."""
    if den == 0:
        return np.inf if num > 0 else -np.inf
    if num == 0:
        return -np.inf
    return float(10 * np.log10(num / den))


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
    for what, signals in (("references", references), ("estimates", estimates)):
        if not isinstance(signals, dict):
            raise ParameterError(f"{what} must be a dict of source name -> signal, got "
                                 f"{type(signals).__name__}")
    if not references:
        raise ParameterError("no reference sources")
    if sr is not None:
        sr = check_sample_rate(sr)
    permutation = check_flag(permutation, "permutation")
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

    for (i, a), (j, b) in itertools.combinations(enumerate(ref_names), 2):
        for c in range(n_channels):
            x, y = _unit_peak(refs[a][c:c + 1])[0], _unit_peak(refs[b][c:c + 1])[0]
            if np.allclose(x, y, rtol=0, atol=1e-9) or np.allclose(x, -y, rtol=0, atol=1e-9):
                raise ParameterError(f"references {a!r} and {b!r} are the same signal (up to its "
                                     "level): BSS Eval cannot tell them apart")
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
            "si_sdr": _mean([si_sdr(ref_stack[i, c], est_stack[j, c]) for c in range(n_channels)]),
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
    mean = {k: _mean([scores[n][k] for n in ref_names]) for k in keys}
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
    y = np.asarray(y)
    if y.dtype.kind in "iu":  # integer samples are taken as they are
        y = y.astype(np.float64)
    y = check_audio(y, name).astype(np.float64, copy=False)
    return y[None] if y.ndim == 1 else y


def _fit_length(y, length):
    if y.shape[1] >= length:
        return y[:, :length]
    return np.pad(y, ((0, 0), (0, length - y.shape[1])))


def _unit_peak(y):
    """``y`` of shape (n, n_samples) with each row divided by its peak (all-zero rows kept).

    The scores are invariant to these scales; the peak, unlike the RMS, is computed
    without overflow for any finite samples.
    """
    peak = np.abs(y).max(axis=-1, keepdims=True)
    return y / np.where(peak > 0, peak, 1.0)


#: Filter length of BSS Eval v3's projection: distortions by filters of 512 taps are
#: allowed (mir_eval's ``flen``).
_FILTER_LENGTH = 512


def _bss_eval_per_channel(refs, ests, permutation):
    """BSS Eval v3 on each channel; scores averaged over channels.

    The permutation is decided on the first channel and kept for the others
    (``perm[i]`` is the estimate of reference ``i``).
    """
    n_src, n_channels, _ = refs.shape
    per_channel = []
    perm = np.arange(n_src)
    for c in range(n_channels):
        sdr, sir, sar, p = _bss_eval_sources(_unit_peak(refs[:, c]), _unit_peak(ests[perm, c] if c else ests[:, c]),
                                             permutation and c == 0)
        if c == 0:
            perm = p
        per_channel.append(np.stack([sdr, sir, sar]))
    per_channel = np.stack(per_channel)  # (n_channels, 3, n_src)
    sdr, sir, sar = ([_mean(per_channel[:, m, i]) for i in range(n_src)] for m in range(3))
    return sdr, sir, sar, perm.tolist()


def _bss_eval_sources(refs, ests, permutation):
    """mir_eval.separation.bss_eval_sources (0.8) of (n_src, n_samples) arrays.

    Returns sdr, sir, sar (by reference) and perm (the estimate of each reference):
    with ``permutation``, the assignment with the highest mean SIR (the first
    such in itertools' order, as mir_eval).
    """
    n_src = refs.shape[0]
    projector = _Projector(refs)
    pairs = list(itertools.product(range(n_src), range(n_src))) if permutation else \
        [(j, j) for j in range(n_src)]
    scores = np.full((3, n_src, n_src), np.nan)  # [metric, estimate, reference]
    for j_est, j_ref in pairs:
        scores[:, j_est, j_ref] = projector.criteria(ests[j_est], j_ref)
    if not permutation:
        return scores[0].diagonal(), scores[1].diagonal(), scores[2].diagonal(), np.arange(n_src)
    orders = list(itertools.permutations(range(n_src)))
    best = np.asarray(orders[int(np.argmax([np.mean(scores[1][order, np.arange(n_src)])
                                             for order in orders]))])
    index = (best, np.arange(n_src))
    return scores[0][index], scores[1][index], scores[2][index], best


class _Projector:
    """Least-squares projections of estimates on the references delayed by 0 to
    ``_FILTER_LENGTH - 1`` samples (mir_eval's ``_project``), with the references'
    Gram matrix computed once."""

    def __init__(self, refs):
        import scipy.fft

        self.refs = refs
        self.factors = {}
        n_src, n_samples = refs.shape
        flen = _FILTER_LENGTH
        self.n_fft = int(2 ** np.ceil(np.log2(n_samples + flen - 1.0)))
        self.spectra = scipy.fft.fft(refs, n=self.n_fft, axis=1)
        self.gram = np.zeros((n_src * flen, n_src * flen))
        for i in range(n_src):
            for j in range(i, n_src):
                corr = np.real(scipy.fft.ifft(self.spectra[i] * np.conj(self.spectra[j])))
                block = _toeplitz_lags(corr, flen)
                self.gram[i * flen:(i + 1) * flen, j * flen:(j + 1) * flen] = block
                self.gram[j * flen:(j + 1) * flen, i * flen:(i + 1) * flen] = block.T

    def _factors(self, sources):
        """LU factors of the Gram matrix of the references ``sources``, computed once
        (LAPACK's getrf, as np.linalg.solve, which mir_eval calls for every pair)."""
        import scipy.linalg

        key = tuple(sources)
        if key not in self.factors:
            rows = np.concatenate([np.arange(i * _FILTER_LENGTH, (i + 1) * _FILTER_LENGTH) for i in sources])
            lu, piv = scipy.linalg.lu_factor(self.gram[np.ix_(rows, rows)], check_finite=False)
            if not np.all(np.diagonal(lu)):  # a zero pivot: singular (numpy raises LinAlgError)
                names = "reference" if len(sources) == 1 else "references"
                raise ParameterError(f"BSS Eval's projection on the {names} is singular: a reference "
                                     "is a copy (or a filtered copy) of another, so they cannot be "
                                     "told apart")
            self.factors[key] = (lu, piv)
        return self.factors[key]

    def project(self, estimate, sources):
        """Projection of ``estimate`` on the delayed references ``sources`` (a list of
        indices), ``n_samples + flen - 1`` samples long."""
        import scipy.fft
        import scipy.linalg
        import scipy.signal

        flen = _FILTER_LENGTH
        n_samples = self.refs.shape[1]
        est_spectrum = scipy.fft.fft(estimate, n=self.n_fft)
        D = np.concatenate([_lags(np.real(scipy.fft.ifft(self.spectra[i] * np.conj(est_spectrum))), flen)
                            for i in sources])
        C = scipy.linalg.lu_solve(self._factors(sources), D).reshape(flen, len(sources), order="F")
        projection = np.zeros(n_samples + flen - 1)
        for k, i in enumerate(sources):
            projection += scipy.signal.fftconvolve(C[:, k], self.refs[i])
        return projection

    def criteria(self, estimate, j):
        """SDR, SIR and SAR of ``estimate`` as the estimate of reference ``j``
        (mir_eval's ``_bss_decomp_mtifilt`` and ``_bss_source_crit``)."""
        n_src, n_samples = self.refs.shape
        s_filt = self.project(estimate, [j])  # the target: s_true + e_spat
        s_all = s_filt if n_src == 1 else self.project(estimate, list(range(n_src)))
        e_interf = s_all - s_filt
        e_artif = -s_all
        e_artif[:n_samples] += estimate
        sdr = _db(np.sum(s_filt**2), np.sum((e_interf + e_artif) ** 2))
        sir = _db(np.sum(s_filt**2), np.sum(e_interf**2))
        sar = _db(np.sum((s_filt + e_interf) ** 2), np.sum(e_artif**2))
        return sdr, sir, sar


def _lags(corr, flen):
    """A circular correlation's values at lags 0, -1, ..., -(flen - 1)."""
    return np.concatenate([corr[:1], corr[-1:-flen:-1]])


def _toeplitz_lags(corr, flen):
    """scipy.linalg.toeplitz(_lags(corr, flen), corr[:flen]): entry (a, b) is the
    correlation at lag b - a."""
    import scipy.linalg

    return scipy.linalg.toeplitz(_lags(corr, flen), r=corr[:flen])
