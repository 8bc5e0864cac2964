"""Blind separation: K components learned on the mixture, grouped into N sources.

The components are grouped by :func:`audionmf.group_components` (timbre, and
rhythm where the mixture is percussive, or how notes start where it is not),
or by hand (``groups``). Mixtures plainly of sustained notes are then
refined: a second fit with twice the components, each given to a source by
the masks of the first (:func:`audionmf.grouping.assign_by_masks`). Why each
default is what it is: ``docs/decisions.md``.
"""
import numpy as np

from .._validation import MAX_COMPONENTS, ParameterError, check_positive_int
from ..analysis import Analysis
from ..grouping import (
    assign_by_masks,
    check_feature_weight,
    group_components,
    labels_from_groups,
    percussive_share,
)
from ..nmf import nmf
from .base import Fitted, Mode, Option, keyword

__all__ = ["Blind"]

#: Templates learned on the mixture take plain multiplicative steps: what follows
#: (grouping) is sensitive to where the fit settles (docs/decisions.md, "Plain steps
#: for fits on the mixture").
MIXTURE_OVER_RELAXATION = 1.0
#: Weight of rhythm beside timbre when grouping a percussive mixture, and the share of
#: percussive energy from which a mixture counts as one (docs/decisions.md, "Rhythm in
#: the blind grouping").
RHYTHM_WEIGHT = 2.5
RHYTHM_ABOVE_PERCUSSIVE_SHARE = 0.06
#: Weight of how notes start and end, where rhythm does not count (docs/decisions.md,
#: "Attacks in the grouping of sustained notes").
ATTACK_WEIGHT = 1.5
#: The refinement of sustained-note grouping: a finer fit with this many times the
#: components, on mixtures whose percussive share is under the threshold below
#: (docs/decisions.md, "Refining the grouping of sustained notes").
REFINE_COMPONENTS = 2
REFINE_BELOW_PERCUSSIVE_SHARE = 0.04
#: Most sources a blind grouping makes (groups given by hand may be more): more than a
#: grouping of components tells apart, and its time grows faster than the count
#: (docs/decisions.md, "Bad input: an audit of the command line").
MAX_SOURCES = 64


class Blind(Mode):
    """``separate(y, sr, n_sources=N)``: no training data."""

    key = "blind"
    options = (
        Option("n_sources", "--sources", "count", f"blind: number of sources (default: 2, at most {MAX_SOURCES})"),
        Option("n_components", "--components", "count",
               "blind: NMF components in all, at least N (default: 8 per source)", metavar="K"),
        Option("groups", "--group", "components",
               "blind: the components of one source, chosen by hand (repeat for each source; "
               "ranges such as 0-3 allowed): the components 'audionmf plot' shows with the same "
               "--components, analysis options and --seed (files up to about 3 minutes at "
               "44.1 kHz)", metavar="I,J,...", repeat=True),
        Option("rhythm_weight", "--rhythm", "weight",
               "blind: weight of how components move over time beside their timbre when grouping "
               "them (default: 2.5 when at least 6%% of the mixture's energy is percussive, as "
               "with speech over music or drums over notes; else 0); 0: the grouping for "
               "sustained notes (timbre and how notes start, refined by a finer fit where the "
               "mixture is plainly sustained; past about 47 s at 44.1 kHz, fitted on stretches "
               "of it)", metavar="W"),
    )

    @classmethod
    def source_names(cls, options):
        groups, n_sources = options.get("groups"), options.get("n_sources")
        n = len(groups) if groups else 2 if n_sources is None else n_sources
        return [f"source{i + 1}" for i in range(n)]

    @classmethod
    def check_options(cls, options, spell=keyword):
        """``n_sources``, ``n_components``, ``labels`` (of the groups, or None) and
        ``rhythm_weight``, checked: what :meth:`configure` uses."""
        n_sources, n_components = options.get("n_sources"), options.get("n_components")
        groups, rhythm_weight = options.get("groups"), options.get("rhythm_weight")
        if rhythm_weight is not None:
            rhythm_weight = check_feature_weight(rhythm_weight, spell("rhythm_weight"))
        labels = None
        if groups is not None:
            try:
                labels = labels_from_groups(groups, n_components)
            except ParameterError as exc:
                raise ParameterError(f"{spell('groups')}: {exc}") from None
            n_groups = int(labels.max()) + 1
            if n_sources is not None and n_sources != n_groups:
                raise ParameterError(f"{spell('n_sources', n_sources)} but {spell('groups')} "
                                     f"gives {n_groups} sources: one group per source")
            if rhythm_weight is not None:
                raise ParameterError(f"{spell('rhythm_weight')} cannot be used with "
                                     f"{spell('groups')}: the groups are given")
            n_sources, n_components = n_groups, len(labels)
        n_sources = check_positive_int(2 if n_sources is None else n_sources, spell("n_sources"),
                                       maximum=MAX_COMPONENTS if groups is not None else MAX_SOURCES)
        n_components = min(8 * n_sources, MAX_COMPONENTS) if n_components is None else n_components
        n_components = check_positive_int(n_components, spell("n_components"), maximum=MAX_COMPONENTS)
        if n_components < n_sources:
            raise ParameterError(
                f"{spell('n_components', n_components)} is fewer than {spell('n_sources', n_sources)}: "
                "each source needs at least one component")
        return dict(n_sources=n_sources, n_components=n_components, labels=labels,
                    rhythm_weight=rhythm_weight)

    def configure(self, analysis_options, spell=keyword, **options):
        checked = self.check_options(options, spell)
        self.analysis = Analysis.from_arguments(self.sr, **analysis_options)
        self.n_sources, self.n_components = checked["n_sources"], checked["n_components"]
        self.labels, self.rhythm_weight = checked["labels"], checked["rhythm_weight"]
        self.names = self.source_names(checked)

    def check_excerpts(self, name):
        if self.labels is not None:
            raise ParameterError(
                f"{name}: groups name the components of a fit of the whole file, and this "
                f"file is longer than one fit takes "
                f"({self.limits.fit_values // (self.rows * (2 * self.analysis.context + 1))} frames), "
                "so it is fitted on excerpts: separate it without groups, or in parts")

    def fit(self, V, whole):
        analysis, limits = self.analysis, self.limits
        fit = self.fit_options(random_state=self.rng, callback=self.callback)
        result = first_fit(V, self.n_components, init=self.init, **fit)
        labels = self.labels
        if labels is None:
            weight, share = self.rhythm_weight, None

            def percussive():
                return percussive_share(V[:self.rows], sr=self.sr, n_fft=analysis.stft.n_fft,
                                        hop_length=analysis.stft.hop_length, power=analysis.power,
                                        stretch=limits.excerpt_frames)

            if weight is None:
                share = percussive()
                weight = RHYTHM_WEIGHT if share >= RHYTHM_ABOVE_PERCUSSIVE_SHARE else 0.0
            labels = group_components(result.W, result.H, self.n_sources, sr=self.sr,
                                      hop_length=analysis.stft.hop_length, n_fft=analysis.stft.n_fft,
                                      rhythm_weight=weight, attack_weight=0.0 if weight else ATTACK_WEIGHT,
                                      segment_frames=None if whole else limits.excerpt_frames,
                                      random_state=self.rng)
            n_finer = REFINE_COMPONENTS * self.n_components
            frames = refined_frames(V, limits) if not weight and self.n_sources > 1 else ()
            if n_finer <= min(V.shape[0], len(frames)) and \
                    (share if share is not None else percussive()) < REFINE_BELOW_PERCUSSIVE_SHARE:
                result, labels = self._refine(V, frames, n_finer, result, labels, whole, fit)
        return Fitted(W=result.W, labels=labels, H=result.H if whole else None)

    def _refine(self, V, frames, n_finer, coarse, labels, whole, fit):
        """The finer fit and its grouping by the masks of the first (over-relaxed
        steps, nmf's default, here: it is how well it fits that matters). A source
        that no finer component prefers still gets the one leaning its way most."""
        all_frames = len(frames) == V.shape[1]
        finer = nmf(V if all_frames else V[:, frames], n_finer, init=self.init, **fit)
        labels = assign_by_masks(finer.W, finer.H, coarse.W,
                                 coarse.H if all_frames else coarse.H[:, frames], labels,
                                 mask_power=self.mask_power)
        if all_frames or not whole:
            return finer, labels
        # Fitted on stretches: the activations of all frames, templates fixed (block by
        # block, as the activations of a long signal are; no progress callback).
        return nmf(V, n_finer, W=finer.W, update_W=False, **dict(fit, callback=None)), labels


def first_fit(V, n_components, **options):
    """The factorization of a mixture whose templates are learned: what
    ``separate`` groups and :func:`audionmf.decompose` returns."""
    return nmf(V, n_components, over_relaxation=MIXTURE_OVER_RELAXATION, **options)


def refined_frames(V, limits):
    """Frames of the spectrogram ``V`` that the refinement's finer fit is fitted on.

    All of them up to ``limits.refine_values`` values; else as many stretches of
    ``limits.excerpt_frames`` frames as fit in that many values, spread evenly over
    the stretches that hold any sound (aligned on multiples of the stretch, so
    that on a spectrogram of excerpts they are excerpts); none (no refinement)
    where not even one stretch fits or none holds sound.
    """
    n_rows, n_frames = V.shape
    stretch = limits.excerpt_frames
    if V.size <= limits.refine_values:
        return np.arange(n_frames)
    count = limits.refine_values // (n_rows * stretch)
    n_stretches = n_frames // stretch
    heard = np.flatnonzero([np.any(V[:, i * stretch:(i + 1) * stretch]) for i in range(n_stretches)])
    if not count or not len(heard):
        return np.arange(0)
    chosen = heard[np.unique(np.linspace(0, len(heard) - 1, min(count, len(heard))).round().astype(int))]
    return (chosen[:, None] * stretch + np.arange(stretch)).ravel()
