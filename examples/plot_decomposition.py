"""Decompose the bundled sample and save the classic three-panel NMF figure.

    python examples/plot_decomposition.py [output.png]

Templates W (left) and activations H (top) around the spectrogram V they explain.
"""
import pathlib
import sys

import numpy as np

import audionmf
from audionmf import plot
from audionmf.features import decompose

SAMPLE = pathlib.Path(__file__).resolve().parent.parent / "audio_samples" / "drums_organ_bass.flac"


def main(output="decomposition.png"):
    y, sr = audionmf.load(SAMPLE)
    dec = decompose(y, sr, n_components=12, random_state=0)
    V = np.abs(audionmf.stft(y, n_fft=dec.n_fft, hop_length=dec.hop_length)) ** dec.power
    fig = plot.decomposition(dec, V)
    fig.savefig(output, dpi=120)
    print(f"{output}: {dec.n_components} components of {SAMPLE.name}, "
          f"{len(dec.times)} frames, final KL divergence {dec.loss:.4g}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
