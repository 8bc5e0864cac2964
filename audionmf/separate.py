"""Blind source separation: factorize, group components into sources, mask, resynthesize.

The pipeline, for a signal ``y`` of shape (n_samples,) or (n_channels, n_samples):

1. ``X = stft(y)`` per channel; ``V = sum over channels of |X| ** power``
   (one factorization serves every channel);
2. ``V ~= W @ H`` with :func:`audionmf.nmf`;
3. the K components are grouped into N sources (:func:`group_components`);
4. soft masks ``M_s = (W_s H_s)**p / sum_j (W_j H_j)**p`` (:func:`wiener_masks`)
   are applied to each channel's complex STFT and inverted.

Because the masks sum to one and the inverse STFT is linear, the sources sum
back to the input; the round-off left by the inverse transform (about 1e-7 of
full scale in float32) is shared equally among the sources, so the sum is exact
to float precision.
"""
import numpy as np

from ._validation import (
    ParameterError,
    beta_to_float,
    check_audio,
    check_nonnegative_real,
    check_positive_int,
)
from .nmf import nmf
from .io import resample
from .spectrogram import STFTParams, istft, mel_filters, stack_frames, stft, unstack_frames

__all__ = ["separate", "group_components", "wiener_masks", "default_power", "template_features",
           "activation_features"]


def default_power(beta):
    """Spectrogram exponent that suits a divergence.

    Magnitude (1) for beta > 0, which includes Kullback-Leibler and Euclidean;
    power (2) for beta <= 0, which includes Itakura-Saito, whose scale
    invariance matches the statistics of a power spectrogram
    (Févotte, Bertin & Durrieu 2009, doi:10.1162/neco.2008.04-08-771).
    """
    return 2.0 if beta_to_float(beta) <= 0 else 1.0


def separate(
    y,
    sr,
    *,
    n_sources=2,
    models=None,
    free_components=0,
    n_components=None,
    beta=None,
    power=None,
    n_fft=None,
    hop_length=None,
    window=None,
    mask_power=2.0,
    max_iter=200,
    tol=1e-4,
    init=None,
    sparsity=0.0,
    rhythm_weight=0.0,
    random_state=None,
    callback=None,
):
    """Separate a signal into sources, blindly or with learned source models.

    Blind (``models=None``): the K components are grouped into ``n_sources``
    sources by :func:`group_components`. With ``models``: their templates are
    held fixed and only the activations are estimated (supervised NMF), plus
    ``free_components`` templates learned on the mixture itself, which form
    an extra source named ``"residual"`` (semi-supervised NMF).

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,) or (n_channels, n_samples)]
        Finite, not silent, at least one STFT frame long.
    sr : int
        Sampling rate in Hz.
    n_sources : int
        N, the number of sources of a blind separation.
    models : list of SourceModel, optional
        One model per source, learned with the same analysis parameters. A
        mixture at another sampling rate is resampled for the analysis; the
        sources come out at the input's rate.
    free_components : int
        With ``models``: templates learned on the mixture for ``"residual"``.
    n_components : int or None
        Blind only: K, components in all; default ``8 * n_sources``.
    beta : float or {"kl", "is", "euclidean"} or None
        Divergence; default "kl", or the models'.
    power : float or None
        Spectrogram exponent; default :func:`default_power` (beta), or the models'.
    n_fft, hop_length, window
        STFT parameters; default 2048, ``n_fft // 4``, "hann", or the models'.
    mask_power : float
        Exponent p of the soft masks; 2 gives Wiener-like masks, larger values
        harder masks.
    max_iter, tol, init, sparsity, random_state, callback
        Passed to :func:`audionmf.nmf` (``sparsity`` penalizes the activations).
    rhythm_weight : float
        Blind only: weight of activation rhythm beside template timbre when
        grouping components (see :func:`group_components`); 0 groups by timbre.

    Returns
    -------
    sources : dict of str -> np.ndarray
        Blind: ``"source1"`` ... ``"sourceN"``, loudest first. With models:
        the models' names, then ``"residual"`` if ``free_components``. Each
        has the shape and dtype of ``y``; together they sum to ``y``.

    Examples
    --------
    >>> import numpy as np
    >>> sr = 8000
    >>> t = np.arange(sr) / sr
    >>> y = np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 1250 * t)
    >>> sources = separate(y, sr, n_sources=2, random_state=0)
    >>> sorted(sources)
    ['source1', 'source2']
    >>> bool(np.allclose(sum(sources.values()), y))
    True
    """
    y = check_audio(y, "the audio")
    sr = check_positive_int(sr, "sr")
    mask_power = check_nonnegative_real(mask_power, "mask_power", allow_zero=False)
    rhythm_weight = check_nonnegative_real(rhythm_weight, "rhythm_weight")
    if models is not None:
        analysis = _analysis_from_models(models, beta, power, n_fft, hop_length, window)
        free_components = check_positive_int(free_components, "free_components", minimum=0)
    else:
        if free_components:
            raise ParameterError("free_components needs models")
        analysis = _analysis_from_arguments(sr, beta, power, n_fft, hop_length, window)
        n_sources = check_positive_int(n_sources, "n_sources")
        n_components = 8 * n_sources if n_components is None else n_components
        n_components = check_positive_int(n_components, "n_components")
        if n_components < n_sources:
            raise ParameterError(
                f"n_components={n_components} is smaller than n_sources={n_sources}: "
                "each source needs at least one component"
            )
    params = analysis["params"]
    output_params = _params_at_rate(params, analysis["sr"], sr)
    if y.shape[-1] < output_params.n_fft:
        raise ParameterError(
            f"too short: {y.shape[-1]} samples, need at least n_fft={output_params.n_fft}"
        )
    if not np.any(y):
        raise ParameterError("the audio is silent: there is nothing to separate")

    # Work in float64 from here on: the masks and the inverse transform decide
    # how exactly the sources add back up to the input.
    y64 = np.asarray(y, dtype=np.float64)
    X = _stft(y64, output_params)
    if analysis["sr"] == sr:
        X_analysis = X
    else:
        y_analysis = resample(y64, sr, analysis["sr"])
        X_analysis = _stft(y_analysis, params)
    V = np.abs(X_analysis) ** analysis["power"]
    if V.ndim == 3:
        V = V.sum(axis=0)
    context = analysis.get("context", 0)
    # The masks do not depend on the level of V: bring it near 1 before float32.
    V = stack_frames(V / V.max(), context).astype(np.float32)
    rng = np.random.default_rng(random_state)
    fit = dict(beta=analysis["beta"], max_iter=max_iter, tol=tol, sparsity=sparsity,
               random_state=rng, callback=callback)
    if models is None:
        result = nmf(V, n_components, init=init, **fit)
        labels = group_components(result.W, result.H, n_sources, sr=analysis["sr"],
                                  hop_length=params.hop_length, n_fft=params.n_fft,
                                  rhythm_weight=rhythm_weight, random_state=rng)
        names = [f"source{i + 1}" for i in range(n_sources)]
    else:
        fixed = [m.templates for m in models]
        free = rng.random((V.shape[0], free_components)).astype(np.float32)
        W = np.hstack(fixed + [free / np.maximum(free.sum(axis=0), 1e-30)])
        update = np.r_[np.zeros(W.shape[1] - free_components, bool), np.ones(free_components, bool)]
        result = nmf(V, W.shape[1], W=W, update_W=update, **fit)
        labels = np.repeat(np.arange(len(models) + (free_components > 0)),
                           [m.n_components for m in models] + ([free_components] if free_components else []))
        names = [m.name for m in models] + (["residual"] if free_components else [])
    masks = wiener_masks(result.W, result.H, labels, mask_power=mask_power, context=context)
    if analysis["sr"] != sr:
        masks = _regrid_masks(masks, params, analysis["sr"], output_params, sr, X.shape[-1])
    estimates = [
        istft(m * X, length=y.shape[-1], n_fft=output_params.n_fft,
              hop_length=output_params.hop_length, window=output_params.window)
        for m in masks
    ]
    residual = (y64 - np.sum(estimates, axis=0)) / len(estimates)
    return {name: (e + residual).astype(y.dtype) for name, e in zip(names, estimates)}


def _stft(y, params):
    return stft(y, n_fft=params.n_fft, hop_length=params.hop_length, window=params.window)


def _analysis_from_arguments(sr, beta, power, n_fft, hop_length, window):
    """The analysis of a factorization without models: the arguments, or the defaults."""
    beta = beta_to_float("kl" if beta is None else beta)
    return {
        "sr": sr,
        "params": STFTParams(2048 if n_fft is None else n_fft, hop_length, window or "hann"),
        "beta": beta,
        "power": default_power(beta) if power is None else check_nonnegative_real(
            power, "power", allow_zero=False),
        "context": 0,
    }


def _analysis_from_models(models, beta, power, n_fft, hop_length, window):
    """The analysis the models were learned with; explicit arguments must agree."""
    from .models import SourceModel, check_models

    models = list(models)
    if not models:
        raise ParameterError("models is empty")
    for m in models:
        if not isinstance(m, SourceModel):
            raise ParameterError(f"models must be SourceModel objects, got {type(m).__name__}")
    check_models(models)
    ref = models[0]
    given = {"beta": None if beta is None else beta_to_float(beta), "power": power,
             "n_fft": n_fft, "hop_length": hop_length, "window": window}
    for field, value in given.items():
        if value is not None and value != getattr(ref, field):
            raise ParameterError(
                f"{field}={value!r} differs from the models' {getattr(ref, field)!r}; "
                "the analysis must be the one the models were learned with"
            )
    return {"sr": ref.sr, "params": ref.stft_params, "beta": ref.beta, "power": ref.power,
            "context": ref.context}


def _params_at_rate(params, from_sr, to_sr):
    """The STFT with the same frame and hop durations at another sampling rate."""
    if from_sr == to_sr:
        return params
    ratio = to_sr / from_sr
    n_fft = max(2, int(round(params.n_fft * ratio)))
    return STFTParams(n_fft, max(1, min(n_fft, int(round(params.hop_length * ratio)))), params.window)


def _regrid_masks(masks, params, sr, out_params, out_sr, n_frames):
    """Interpolate masks from one STFT grid to another, linearly in Hz and seconds.

    Every source gets the same interpolation weights, so masks still sum to 1.
    Above the analysis Nyquist frequency the top bin's mask is kept.
    """
    def weights(source_positions, target_positions):
        pos = np.interp(target_positions, source_positions, np.arange(len(source_positions)))
        low = np.floor(pos).astype(int)
        high = np.minimum(low + 1, len(source_positions) - 1)
        return low, high, pos - low

    f_low, f_high, f_w = weights(np.arange(params.n_fft // 2 + 1) * sr / params.n_fft,
                                 np.arange(out_params.n_fft // 2 + 1) * out_sr / out_params.n_fft)
    masks = masks[:, f_low] * (1 - f_w)[:, None] + masks[:, f_high] * f_w[:, None]
    t_low, t_high, t_w = weights(np.arange(masks.shape[-1]) * params.hop_length / sr,
                                 np.arange(n_frames) * out_params.hop_length / out_sr)
    return masks[..., t_low] * (1 - t_w) + masks[..., t_high] * t_w


def wiener_masks(W, H, labels, *, mask_power=2.0, context=0):
    """Soft masks ``M_s = (W_s H_s)**p / sum_j (W_j H_j)**p``, one per source.

    Parameters
    ----------
    W : np.ndarray [shape=(n_freq * (2 * context + 1), K)]
    H : np.ndarray [shape=(K, n_frames)]
    labels : np.ndarray [shape=(K,), dtype=int]
        Source index (0 .. N-1) of each component; every source needs one.
    mask_power : float
        p.
    context : int
        For templates of stacked frames (:func:`audionmf.stack_frames`): each
        source's spectrogram is the average of its stacked predictions.

    Returns
    -------
    masks : np.ndarray [shape=(N, n_freq, n_frames), dtype=float64]
        Values in [0, 1], summing to 1 in every bin. Where every source model
        is zero the mass is shared equally.
    """
    labels = np.asarray(labels)
    n_sources = int(labels.max()) + 1
    missing = set(range(n_sources)) - set(labels.tolist())
    if missing:
        raise ParameterError(f"sources {sorted(missing)} have no component")
    W = np.asarray(W, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    n_freq = W.shape[0] // (2 * context + 1)
    models = np.stack([
        unstack_frames(W[:, labels == s] @ H[labels == s], n_freq, context) for s in range(n_sources)
    ])
    # Scale each bin by its largest model before the power: no overflow, no underflow.
    top = models.max(axis=0)
    np.divide(models, top, out=models, where=top > 0)
    models[:, top <= 0] = 1.0
    models **= mask_power
    models /= models.sum(axis=0)
    return models


def template_features(W, *, sr, n_fft, n_mels=40, n_coeffs=13):
    """Timbre features of templates: cepstral coefficients of their mel spectra.

    Each template is summarized by the shape of its spectral envelope on the mel
    scale (MFCC 1..n_coeffs, dropping the 0th, which only measures level). Two
    notes of one instrument share an envelope, while a kick drum, a voice and
    a flute do not; this is the feature of nussl's timbre clustering.

    Returns
    -------
    features : np.ndarray [shape=(K, n_coeffs)]
    """
    import scipy.fft

    mel = mel_filters(sr=sr, n_fft=n_fft, n_mels=n_mels)
    W = np.asarray(W, dtype=np.float64)
    W = W / np.maximum(W.sum(axis=0, keepdims=True), np.finfo(np.float64).tiny)
    log_mel = np.log(mel @ W + 1e-10)
    cepstra = scipy.fft.dct(log_mel, type=2, norm="ortho", axis=0)
    return cepstra[1 : n_coeffs + 1].T


def activation_features(H, *, sr, hop_length):
    """Rhythm features of activations: how each component comes and goes.

    The share of each activation's (mean-removed, peak-normalized) energy in
    four modulation bands, 0-1, 1-4, 4-10 and 10-22 Hz, in log, and its
    sparseness (Hoyer). Sustained notes live below a few hertz; syllables
    around 4 Hz; drum hits spread their energy up to the fastest band and are
    sparse.

    Returns
    -------
    features : np.ndarray [shape=(K, 5)]
    """
    H = np.asarray(H, dtype=np.float64)
    n_frames = H.shape[1]
    rows = H / (H.max(axis=1, keepdims=True) + 1e-300)
    power = np.abs(np.fft.rfft(rows - rows.mean(axis=1, keepdims=True), axis=1)) ** 2
    freqs = np.fft.rfftfreq(n_frames, hop_length / sr)
    bands = np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1)
                      for lo, hi in ((0, 1), (1, 4), (4, 10), (10, np.inf))], axis=1)
    shares = np.log(bands / (bands.sum(axis=1, keepdims=True) + 1e-300) + 1e-6)
    norms = np.linalg.norm(H, axis=1) + 1e-300
    hoyer = (np.sqrt(n_frames) - H.sum(axis=1) / norms) / max(np.sqrt(n_frames) - 1, 1e-12)
    return np.column_stack([shares, hoyer])


def group_components(W, H, n_sources, *, sr, n_fft, hop_length=None, rhythm_weight=0.0,
                     random_state=None, n_init=10):
    """Assign each of K components to one of N sources, unsupervised.

    Components are clustered by k-means (k-means++ starts, the best of
    ``n_init`` runs) on the timbre of their templates
    (:func:`template_features`) and, with ``rhythm_weight > 0``, the rhythm of
    their activations (:func:`activation_features`) weighted by it, each
    feature standardized. Sources are numbered by decreasing energy of their
    part of ``W @ H``.

    Rhythm is a trade-off, hence off by default: on the development corpus,
    ``rhythm_weight=1.5`` raised the mean SDR of two-source blind separation
    from 2.7 to 5.8 dB on speech over music and from 1.8 to 3.6 dB on drums
    with organ and bass, but lowered it from 4.9 to 2.4 dB on flute over piano
    and breaks apart steady tones that timbre alone groups right.

    Returns
    -------
    labels : np.ndarray [shape=(K,), dtype=int]
        Source index of each component; each source gets at least one.
    """
    n_sources = check_positive_int(n_sources, "n_sources")
    K = W.shape[1]
    if K < n_sources:
        raise ParameterError(f"cannot make {n_sources} sources from {K} components")
    rng = np.random.default_rng(random_state)
    rhythm_weight = check_nonnegative_real(rhythm_weight, "rhythm_weight")
    hop_length = check_positive_int(n_fft // 4 if hop_length is None else hop_length, "hop_length")

    def standardized(F):
        return (F - F.mean(axis=0)) / (F.std(axis=0) + 1e-12)

    features = standardized(template_features(W, sr=sr, n_fft=n_fft))
    if rhythm_weight:
        rhythm = standardized(activation_features(H, sr=sr, hop_length=hop_length))
        features = np.hstack([features, rhythm_weight * rhythm])
    labels = _kmeans(features, n_sources, rng, n_init)
    energy = np.array(
        [(W[:, labels == s].sum(axis=0) * H[labels == s].sum(axis=1)).sum() for s in range(n_sources)]
    )
    order = np.argsort(-energy, kind="stable")
    rank = np.empty(n_sources, dtype=int)
    rank[order] = np.arange(n_sources)
    return rank[labels]


def _kmeans(X, k, rng, n_init, max_iter=100):
    """Lloyd's k-means with k-means++ seeding; no cluster is left empty."""
    best, best_inertia = None, np.inf
    for _ in range(n_init):
        centers = X[[rng.integers(len(X))]]
        for _ in range(1, k):
            d2 = ((X[:, None, :] - centers[None]) ** 2).sum(-1).min(axis=1)
            p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(X), 1 / len(X))
            centers = np.vstack([centers, X[rng.choice(len(X), p=p)]])
        labels = np.full(len(X), -1)
        for _ in range(max_iter):
            d2 = ((X[:, None, :] - centers[None]) ** 2).sum(-1)
            new = d2.argmin(axis=1)
            for c in range(k):  # refill an empty cluster with the worst-fitting movable point
                if not np.any(new == c):
                    movable = np.bincount(new, minlength=k)[new] > 1
                    new[np.argmax(np.where(movable, d2[np.arange(len(X)), new], -np.inf))] = c
            if np.array_equal(new, labels):
                break
            labels = new
            centers = np.array([X[labels == c].mean(axis=0) for c in range(k)])
        inertia = ((X - centers[labels]) ** 2).sum()
        if inertia < best_inertia:
            best, best_inertia = labels.copy(), inertia
    return best
