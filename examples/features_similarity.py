"""Compare excerpts through their activations on one fixed dictionary of templates.

    python examples/features_similarity.py

A first decomposition of the bundled mixture gives the dictionary; every
excerpt (of the mixture and of its two stems) is then decomposed with those
templates held fixed, so that the K activations mean the same thing for all
of them. The cosine similarity of their mean activations says which excerpts
sound alike: each stem resembles itself at another time more than the other stem.
"""
import pathlib

import numpy as np

import audionmf
from audionmf.features import decompose

SAMPLES = pathlib.Path(__file__).resolve().parent.parent / "audio_samples"
ANALYSIS = dict(n_fft=1024, max_iter=100)


def main():
    mix, sr = audionmf.load(SAMPLES / "drums_organ_bass.flac")
    stems = {name: audionmf.load(SAMPLES / "drums_organ_bass_stems" / f"{name}.flac")[0]
             for name in ("drums", "harmonic")}
    dictionary = decompose(mix, sr, n_components=16, random_state=0, **ANALYSIS).templates

    excerpts = {}
    for name, y in {"mix": mix, **stems}.items():
        for start in (1.0, 6.0):
            excerpts[f"{name} {start:g}-{start + 2:g} s"] = y[int(start * sr) : int((start + 2) * sr)]
    features = np.array([
        decompose(y, sr, templates=dictionary, **ANALYSIS).activations.mean(axis=1)
        for y in excerpts.values()
    ])
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    similarity = features @ features.T

    width = max(map(len, excerpts))
    print(f"cosine similarity of mean activations over {len(dictionary.T)} fixed templates\n")
    print(" " * width, *(f"{i:>6}" for i in range(len(excerpts))))
    for i, (name, row) in enumerate(zip(excerpts, similarity)):
        print(f"{name:<{width}}", *(f"{s:6.2f}" for s in row), f"  ({i})")


if __name__ == "__main__":
    main()
