"""Which components make which source: features of templates and activations, and
the clustering that groups components into sources blindly.

Used by the blind mode of :func:`audionmf.separate` (:mod:`audionmf.modes.blind`,
where its defaults live: when rhythm counts, the refinement of sustained notes);
:func:`group_components` is its grouping, :func:`percussive_share` the measure
its defaults are chosen by, and :func:`assign_by_masks` the refinement's grouping.
"""
import numpy as np

from . import _lazy
from ._validation import MAX_COMPONENTS, ParameterError, check_nonnegative_real, check_positive_int
from .limits import DEFAULT_LIMITS
from .masks import HPSS_KERNEL, hpss_mask, wiener_masks
from .spectrogram import mel_filters

__all__ = ["group_components", "labels_from_groups", "template_features", "activation_features",
           "attack_asymmetry", "percussive_share", "assign_by_masks"]

#: :func:`percussive_share`'s median filter across time, in seconds: HPSS's 31 frames
#: at 22.05 kHz, hop 512, where the rhythm threshold of the blind default
#: (:data:`audionmf.modes.blind.RHYTHM_ABOVE_PERCUSSIVE_SHARE`) was measured.
PERCUSSIVE_SHARE_SECONDS = 31 * 512 / 22050
#: The floor of :func:`attack_asymmetry` in :func:`group_components`, as a share of the
#: components' mean step energy: unfloored, the faint components of an over-complete fit
#: scored far out (docs/decisions.md, "Attacks in the grouping of sustained notes").
ATTACK_FLOOR = 0.05


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
    mel = mel_filters(sr=sr, n_fft=n_fft, n_mels=n_mels)
    W = np.asarray(W, dtype=np.float64)
    W = W / np.maximum(W.sum(axis=0, keepdims=True), np.finfo(np.float64).tiny)
    log_mel = np.log(mel @ W + 1e-10)
    cepstra = _lazy.module("scipy.fft").dct(log_mel, type=2, norm="ortho", axis=0)
    return cepstra[1 : n_coeffs + 1].T


def activation_features(H, *, sr, hop_length, segment=None):
    """Rhythm features of activations: how each component comes and goes.

    The share of each activation's (mean-removed, peak-normalized) energy in
    four modulation bands, 0-1, 1-4, 4-10 and 10-22 Hz, in log, and its
    sparseness (Hoyer). Sustained notes live below a few hertz; syllables
    around 4 Hz; drum hits spread their energy up to the fastest band and are
    sparse.

    Parameters
    ----------
    H : np.ndarray [shape=(K, n_frames)]
    sr, hop_length : int
        The frame rate of ``H`` is ``sr / hop_length``.
    segment : int or None
        ``H`` is excerpts of this many frames laid side by side (a long signal
        fitted on excerpts): the modulation spectrum is that of each excerpt
        (its own mean removed), summed, so the jumps at the seams, which no
        component makes, spread no energy over the bands.

    Returns
    -------
    features : np.ndarray [shape=(K, 5)]
    """
    H = np.asarray(H, dtype=np.float64)
    K, n_frames = H.shape
    rows = H / (H.max(axis=1, keepdims=True) + 1e-300)
    length = n_frames if segment is None else check_positive_int(segment, "segment")
    if n_frames % length:
        raise ParameterError(f"segment={segment}: {n_frames} frames are not whole excerpts of it")
    pieces = rows.reshape(K, n_frames // length, length)
    power = (np.abs(np.fft.rfft(pieces - pieces.mean(axis=2, keepdims=True), axis=2)) ** 2).sum(axis=1)
    freqs = np.fft.rfftfreq(length, hop_length / sr)
    bands = np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1)
                      for lo, hi in ((0, 1), (1, 4), (4, 10), (10, np.inf))], axis=1)
    shares = np.log(bands / (bands.sum(axis=1, keepdims=True) + 1e-300) + 1e-6)
    norms = np.linalg.norm(H, axis=1) + 1e-300
    hoyer = (np.sqrt(n_frames) - H.sum(axis=1) / norms) / max(np.sqrt(n_frames) - 1, 1e-12)
    return np.column_stack([shares, hoyer])


def attack_asymmetry(H, floor=0.0, segment=None):
    """How abruptly each activation rises compared with how it falls.

    The log of the ratio of the energy of an activation's rises (its positive
    frame-to-frame differences, squared and summed) to that of its falls. A
    struck or plucked note jumps up and fades over many frames: its rises
    are few and large, its falls many and small, and the score is high. A
    blown or bowed note swells and stops about as fast: the score is near 0
    (exactly 0 for a steady activation). With ``floor=0`` it does not depend
    on the activation's scale.

    Parameters
    ----------
    H : np.ndarray [shape=(K, n_frames)]
    floor : float >= 0
        Added to both energies: a component whose rises and falls are small
        against it scores near 0, whatever their ratio (unfloored, a nearly
        silent component, all noise, can score far from every other).
    segment : int or None
        ``H`` is excerpts of this many frames laid side by side: the steps
        from one to the next are no rise or fall of a note, and are left out.

    Returns
    -------
    asymmetry : np.ndarray [shape=(K,)]
    """
    steps = _steps(H, segment)
    rises = np.sum(np.square(np.maximum(steps, 0.0)), axis=1)
    falls = np.sum(np.square(np.minimum(steps, 0.0)), axis=1)
    tiny = 1e-30 * (rises + falls) + 1e-300 + floor  # a flat activation (no steps) scores 0
    return np.log((rises + tiny) / (falls + tiny))


def _steps(H, segment=None):
    """Frame-to-frame differences of each row of ``H``, 0 across excerpt seams."""
    steps = np.diff(np.asarray(H, dtype=np.float64), axis=1)
    if segment is not None:
        steps[:, check_positive_int(segment, "segment") - 1 :: segment] = 0.0
    return steps


def _fill_empty_groups(labels, score):
    """Give each empty group ``g`` the member of a group of several with the highest
    ``score[:, g]``, one group after another; ``labels`` is changed in place."""
    n_groups = score.shape[1]
    for g in range(n_groups):
        if not np.any(labels == g):
            movable = np.bincount(labels, minlength=n_groups)[labels] > 1
            labels[np.argmax(np.where(movable, score[:, g], -np.inf))] = g
    return labels


def _by_energy(W, H, labels, n_sources):
    """Renumber sources by decreasing energy of their part of ``W @ H``."""
    W = np.asarray(W, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    energy = np.array(
        [(W[:, labels == s].sum(axis=0) * H[labels == s].sum(axis=1)).sum() for s in range(n_sources)]
    )
    order = np.argsort(-energy, kind="stable")
    rank = np.empty(n_sources, dtype=int)
    rank[order] = np.arange(n_sources)
    return rank[labels]


def percussive_share(S, *, sr, n_fft, hop_length=None, power=1.0, stretch=256, max_stretches=8):
    """The share of a spectrogram's energy in its percussive part.

    Harmonic-percussive separation of the magnitude spectrogram on 128 mel
    bands (median filters 31 bands long across frequency and 0.72 s long
    across time, whatever the hop, but at most ``stretch`` and at least 3
    frames; soft masks, as
    :func:`librosa.decompose.hpss`: :func:`audionmf.masks.hpss_mask`).
    Sustained notes score a few percent, speech over music or drums over
    notes ten times more.

    The threshold of the blind default,
    :data:`audionmf.modes.blind.RHYTHM_ABOVE_PERCUSSIVE_SHARE`, was measured at
    22.05 kHz with n_fft 2048 and hop 512. The same n_fft at 44.1 kHz has frames
    half as long, which show attacks sharper, and sustained notes score up to
    twice as much: for sustained notes at such rates, pass ``rhythm_weight=0``
    (``--rhythm 0``; docs/decisions.md, "Rhythm in the blind grouping").

    Parameters
    ----------
    S : np.ndarray [shape=(1 + n_fft // 2, n_frames)]
        Spectrogram: STFT magnitudes to the power ``power``.
    sr, n_fft : int
        Its sampling rate (in whole Hz) and FFT size.
    hop_length : int or None
        Its hop; default ``n_fft // 4``.
    power : float > 0
        1 for magnitudes, 2 for power.
    stretch : int > 0
        Frames split on their own: the spectrogram is cut into stretches this
        long, so that excerpts of this many frames laid side by side show no
        seams (a seam would pass for a hit). Where a shorter remainder is
        left, the last stretch is the one that ends with the spectrogram
        (overlapping the one before: a lone frame or two would make a poor
        split).
    max_stretches : int > 0
        Past this many stretches, this many spread evenly over the spectrogram.

    Returns
    -------
    share : float
        In [0, 1]; 0 for a silent spectrogram.
    """
    S = np.asarray(S)
    if S.ndim != 2 or S.shape[0] != n_fft // 2 + 1:
        raise ParameterError(f"S must have 1 + n_fft // 2 = {n_fft // 2 + 1} rows, got shape {S.shape}")
    sr = check_positive_int(sr, "sr")
    hop_length = n_fft // 4 if hop_length is None else check_positive_int(hop_length, "hop_length")
    power = check_nonnegative_real(power, "power", allow_zero=False)
    stretch = check_positive_int(stretch, "stretch")
    max_stretches = check_positive_int(max_stretches, "max_stretches")
    last = max(S.shape[1] - stretch, 0)
    starts = np.unique(np.append(np.arange(0, last + 1, stretch), last))
    if len(starts) > max_stretches:
        starts = starts[np.linspace(0, len(starts) - 1, max_stretches).round().astype(int)]
    filters = mel_filters(sr=sr, n_fft=n_fft, n_mels=128)
    across_time = 2 * int(PERCUSSIVE_SHARE_SECONDS * sr / hop_length / 2) + 1  # odd, 31 there
    # No longer than a stretch (the largest odd length that fits), no shorter than 3.
    across_time = max(min(across_time, stretch - (1 - stretch % 2)), 3)
    percussive = harmonic = 0.0
    for t in starts:
        part = S[:, t:t + stretch].astype(np.float64)
        bands = filters @ (part if power == 1.0 else part ** (1.0 / power))
        mask = hpss_mask(bands, kernel=(across_time, HPSS_KERNEL))
        percussive += float(np.sum(np.square(bands * mask)))
        harmonic += float(np.sum(np.square(bands * (1.0 - mask))))
    total = percussive + harmonic
    return percussive / total if total > 0 else 0.0


def labels_from_groups(groups, n_components=None):
    """Source index of each component from hand-made groups of component indices.

    Parameters
    ----------
    groups : sequence of sequences of int
        ``groups[s]`` lists the components of source s; together the groups
        must hold each of 0 .. K-1 exactly once.
    n_components : int or None
        K; default: one more than the largest index given.

    Returns
    -------
    labels : np.ndarray [shape=(K,), dtype=int]

    Examples
    --------
    >>> labels_from_groups([[0, 3, 5], [1, 2, 4]])
    array([0, 1, 1, 0, 1, 0])
    """
    try:
        groups = [[int(k) for k in group] for group in groups]
    except (TypeError, ValueError):
        raise ParameterError(f"groups={groups!r}: expected lists of component indices") from None
    if not groups or any(not group for group in groups):
        raise ParameterError(f"groups={groups!r}: every group needs at least one component")
    members = sorted(k for group in groups for k in group)
    if members[0] < 0 or members[-1] >= MAX_COMPONENTS:
        raise ParameterError(f"groups={groups!r}: components are numbered 0 to "
                             f"{MAX_COMPONENTS - 1} at most")
    K = members[-1] + 1 if n_components is None else check_positive_int(
        n_components, "n_components", maximum=MAX_COMPONENTS)
    repeated = sorted({a for a, b in zip(members, members[1:]) if a == b})
    if repeated:
        raise ParameterError(f"components {repeated} are in more than one group")
    if members != list(range(K)):
        missing = sorted(set(range(K)) - set(members))
        extra = sorted(set(members) - set(range(K)))
        raise ParameterError(
            f"the groups must hold each component 0..{K - 1} once"
            + (f"; missing {missing}" if missing else "")
            + (f"; no component {extra} (there are {K})" if extra else "")
        )
    labels = np.empty(K, dtype=int)
    for source, group in enumerate(groups):
        labels[group] = source
    return labels


#: Largest weight of the rhythm or attack features beside timbre. At 1000 timbre no
#: longer counts; far beyond, the squared distances overflow.
MAX_WEIGHT = 1000.0


def check_feature_weight(value, name):
    """A weight of features beside timbre: a real number in [0, MAX_WEIGHT]."""
    value = check_nonnegative_real(value, name)
    if value > MAX_WEIGHT:
        raise ParameterError(f"{name}={value!r}: must be at most {MAX_WEIGHT:g}")
    return value


def group_components(W, H, n_sources, *, sr, n_fft, hop_length=None, rhythm_weight=0.0,
                     attack_weight=0.0, segment_frames=None, random_state=None, n_init=10):
    """Assign each of K components to one of N sources, unsupervised.

    Components are clustered by k-means (k-means++ starts, the best of
    ``n_init`` runs) on the timbre of their templates
    (:func:`template_features`: the cepstral distance, the coefficients scaled
    as a whole, so that high orders keep their small spread) and, with
    ``rhythm_weight > 0``, the rhythm of their activations
    (:func:`activation_features`, each feature standardized) weighted by it,
    and with ``attack_weight > 0``, how their activations rise and fall
    (:func:`attack_asymmetry`, standardized) weighted by that.
    ``segment_frames``: ``H`` is excerpts of that many frames side by side,
    whose seams both activation measures leave out. Sources are numbered by
    decreasing energy of their part of ``W @ H``.

    Rhythm is a trade-off, hence off by default here, and turned on by
    :func:`audionmf.separate` only for percussive mixtures: it helps where
    something is struck or spoken, and breaks apart steady tones that timbre
    alone groups right (docs/decisions.md, "Rhythm in the blind grouping").

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
    rhythm_weight = check_feature_weight(rhythm_weight, "rhythm_weight")
    attack_weight = check_feature_weight(attack_weight, "attack_weight")
    hop_length = check_positive_int(n_fft // 4 if hop_length is None else hop_length, "hop_length")

    # Timbre: the cepstral distance, scaled as a whole (each coefficient keeps its own
    # spread: the fine detail of high orders must not weigh as much as the envelope's
    # slope). Rhythm: each feature standardized, the set weighted.
    timbre = template_features(W, sr=sr, n_fft=n_fft)
    timbre = timbre - timbre.mean(axis=0)
    features = timbre / (np.sqrt(np.mean(timbre**2)) + 1e-12)
    if rhythm_weight:
        rhythm = activation_features(H, sr=sr, hop_length=hop_length, segment=segment_frames)
        rhythm = (rhythm - rhythm.mean(axis=0)) / (rhythm.std(axis=0) + 1e-12)
        features = np.hstack([features, rhythm_weight * rhythm])
    if attack_weight:
        # On the scale of each component's part of the spectrogram, with a floor: the
        # faint components that fit little but noise must not stand out.
        scaled = np.asarray(H, dtype=np.float64) * np.asarray(W, dtype=np.float64).sum(axis=0)[:, None]
        steps = np.square(_steps(scaled, segment_frames)).sum(axis=1)
        attack = attack_asymmetry(scaled, floor=ATTACK_FLOOR * np.mean(steps), segment=segment_frames)
        attack = (attack - attack.mean()) / (attack.std() + 1e-12)
        features = np.hstack([features, attack_weight * attack[:, None]])
    labels = _kmeans(features, n_sources, rng, n_init)
    return _by_energy(W, H, labels, n_sources)


def _kmeans(X, k, rng, n_init, max_iter=100):
    """Lloyd's k-means with k-means++ seeding; no cluster is left empty.

    Not scipy's ``kmeans2``: it finds the same groups but has no convergence test and
    runs every round (43 ms a grouping here against 3 ms); see docs/decisions.md.
    """
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
            # An empty cluster gets the point that fits its own cluster worst (of those
            # whose cluster has several), judged as the clusters stand before refilling.
            misfit = d2[np.arange(len(X)), new]
            new = _fill_empty_groups(new, np.broadcast_to(misfit[:, None], d2.shape))
            if np.array_equal(new, labels):
                break
            labels = new
            centers = np.array([X[labels == c].mean(axis=0) for c in range(k)])
        inertia = ((X - centers[labels]) ** 2).sum()
        if inertia < best_inertia:
            best, best_inertia = labels.copy(), inertia
    return best


def assign_by_masks(W, H, W_coarse, H_coarse, labels_coarse, *, mask_power=2.0):
    """Give the components of one factorization to the sources of another.

    Each component ``W[:, k] H[k]`` goes to the source whose soft mask (of the
    grouped factorization ``W_coarse``, ``H_coarse``, ``labels_coarse``, as
    :func:`wiener_masks` makes it) keeps the largest share of it (summed over
    the spectrogram's bins): a fit with more components than grouping can
    sort reliably, grouped by the sources of one with fewer. Both
    factorizations are of the same spectrogram. Sources keep their numbers,
    then are renumbered by decreasing energy of their part of ``W @ H``, as
    :func:`group_components` numbers them.

    Returns
    -------
    labels : np.ndarray [shape=(K,), dtype=int]
        Source index of each component; each source gets at least one
        (where no component has its largest share there, the one with the
        largest share there, taken from a source that has several).
    """
    W = np.asarray(W, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    labels_coarse = np.asarray(labels_coarse)
    mask_power = check_nonnegative_real(mask_power, "mask_power", allow_zero=False)
    if labels_coarse.shape != (np.shape(W_coarse)[1],):
        raise ParameterError(f"labels_coarse has {labels_coarse.size} labels for "
                             f"{np.shape(W_coarse)[1]} coarse components")
    n_sources = int(labels_coarse.max()) + 1
    if W.shape[1] < n_sources:
        raise ParameterError(f"cannot make {n_sources} sources from {W.shape[1]} components")
    if H.shape[1] != np.shape(H_coarse)[1] or W.shape[0] != np.shape(W_coarse)[0]:
        raise ParameterError(f"the factorizations are of different spectrograms: W {W.shape}, H "
                             f"{H.shape} and W {np.shape(W_coarse)}, H {np.shape(H_coarse)}")
    # kept[k, s]: the part of component k's spectrogram that source s's mask keeps,
    # summed a block of frames at a time (the masks of a long signal are large).
    kept = np.zeros((W.shape[1], n_sources))
    step = max(1, DEFAULT_LIMITS.block_values // W.shape[0])
    for t0 in range(0, H.shape[1], step):
        masks = wiener_masks(W_coarse, H_coarse[:, t0:t0 + step], labels_coarse, mask_power=mask_power)
        for s, mask in enumerate(masks):
            kept[:, s] += np.sum(W * (mask @ H[:, t0:t0 + step].T), axis=0)
    shares = kept / np.maximum(kept.sum(axis=1, keepdims=True), 1e-300)
    labels = _fill_empty_groups(shares.argmax(axis=1), shares)
    return _by_energy(W, H, labels, n_sources)
