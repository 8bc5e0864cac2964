"""A listening report of a separation: one web page to see and hear what it found.

``audionmf separate --report`` writes ``OUTDIR/<stem>/report.html`` beside the
sources (:func:`separation_report`, through the ``report`` callable of
:func:`audionmf.separate_file`), and for a batch ``OUTDIR/index.html``
(:func:`index_page`); ``audionmf evaluate --report`` writes
``ESTIMATE_DIR/report_scores.html`` (:func:`scores_page`).

A page opens offline from the disk in any current browser: no network, no
script or style from elsewhere. Its pictures (drawn by :mod:`audionmf.plot`,
nothing here draws) and the short clips of each component (16 kHz mono FLAC)
are inside it as ``data:`` URIs; the mixture and the sources are played from
their files, by relative links, so the page travels with its folder and stays
small (under 3 MB for a 3-minute song with 16 components).

What a page of a separation holds: players and log-frequency spectrograms of
the mixture and each source (pooled over time, as ``--plot`` draws them, so an
hour-long file costs no more); each source's share of the energy over time;
for a blind separation fitted on the whole signal, every component (its
template, its activation, the source it was given to, and the loudest few
seconds of the mixture masked by that component alone) with the command that
reruns the separation with ``--group`` for the grouping on the page, which the
reader may change there; the parameters, audionmf's version and the time
taken.
"""
import base64
import html
import io
import json
import os
import re
import shlex
import urllib.parse
import urllib.request

import numpy as np
import soundfile as sf

from . import plot
from ._version import __version__
from .evaluate import score_columns
from .io import resample
from .masks import wiener_masks
from .spectrogram import bin_frequencies, frame_times, istft, stft

__all__ = ["separation_report", "index_page", "scores_page", "read_summary", "component_clip",
           "group_ranges", "REPORT_NAME", "INDEX_NAME", "SCORES_NAME"]

REPORT_NAME, INDEX_NAME, SCORES_NAME = "report.html", "index.html", "report_scores.html"
#: Each component's clip: its loudest stretch of this many seconds, at this rate, mono.
CLIP_SECONDS, CLIP_SR = 4.0, 16000
#: Most components a report shows one by one (a figure and a clip each; the 3-minute
#: song's 16 take 2.5 MB, so 64 stay well under 50 MB).
MAX_SHOWN_COMPONENTS = 64
#: Resolution of the pictures (dots per inch).
DPI = 80
#: Extensions of the inputs that browsers play, linked as the mixture's player.
PLAYABLE = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".webm")
_MIME = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".oga": "audio/ogg",
         ".opus": "audio/ogg", ".mp3": "audio/mpeg", ".webm": "audio/webm"}
_SUMMARY = re.compile(r'<script type="application/json" id="audionmf-summary">(.*?)</script>', re.S)


def separation_report(separation, *, command=None, grouping=(), parameters=None):
    """The page of a separation, as ``{"report.html": bytes}``.

    Parameters
    ----------
    separation : audionmf.separate.Separation
        What :func:`audionmf.separate_file` hands its ``report`` callable.
    command : list of str, optional
        The command that ran the separation, without its grouping options
        (``--sources``, ``--components``, ``--group``, ``--rhythm``): the page
        adds ``--components`` and ``--group`` for the grouping it shows.
        Without it, the page gives those options alone.
    grouping : list of str
        The grouping options that were given (``["--sources", "3"]``), shown
        with the command that ran the separation.
    parameters : dict, optional
        More to list under "parameters" (the command line's options).

    Examples
    --------
    >>> import functools, os, tempfile
    >>> from audionmf import separate_file
    >>> folder = tempfile.mkdtemp()
    >>> written = separate_file("audio_samples/drums_organ_bass.flac", folder, two_stems="drums",
    ...                         report=separation_report)
    >>> sorted(os.listdir(folder))
    ['drums.wav', 'no_drums.wav', 'report.html']
    """
    sep = separation
    mode, signal, summary = sep.mode, sep.signal, sep.summary
    stem = os.path.splitext(os.path.basename(sep.path))[0]
    spectra = summary.spectra()
    duration = signal.n_samples / signal.sr
    info = {"input": os.path.basename(sep.path), "duration": round(duration, 3),
            "sources": list(mode.names), "seconds": round(sep.seconds, 3), "mode": mode.key,
            "version": __version__}
    body = [f"<h1>{_e(stem)}</h1>",
            f'<p class="meta">{_e(mode.key)} separation of {_e(sep.path)} ({_duration(duration)}, '
            f"{signal.sr} Hz, {signal.n_channels} channel{'s' * (signal.n_channels > 1)}) into "
            f"{len(mode.names)} sources in {sep.seconds:.1f} s, audionmf {_e(__version__)}</p>",
            "<h2>Sources</h2>", _sources_table(sep, spectra, summary)]
    body += ["<h2>Each source's share of the energy</h2>",
             _figure(plot.energy_shares(spectra, signal.sr, hop_length=summary.hop_length)[0].figure,
                     "each source's share of the energy over time", size=(9, 2.2))]
    body.append(_components(sep, command))
    body += ["<h2>Parameters</h2>", _parameters(sep, parameters, command, grouping)]
    page = _page(f"audionmf: {stem}", "\n".join(body), info)
    return {REPORT_NAME: page.encode()}


def _sources_table(sep, spectra, summary):
    """A row per signal: its name, its player, its spectrogram on the mixture's scale."""
    ref = max(S.max() for S in spectra.values())
    n_fft = sep.mode.analysis.stft.n_fft
    rows = []
    for name, S in spectra.items():
        if name == "mixture":
            player = _mixture_player(sep.path, sep.folder)
        else:
            player = _player(_relative(sep.files[name], sep.folder), _mime(sep.files[name]))
        fig = plot.source_spectrograms({name: S}, sep.signal.sr, hop_length=summary.hop_length,
                                       n_fft=n_fft, log_freq=True, ref=ref, size=(9, 2.3))
        rows.append(f'<tr><th>{_e(name)}</th><td>{player}</td></tr>'
                    f'<tr><td colspan="2">{_figure(fig, f"spectrogram of {name}")}</td></tr>')
    return f'<table class="sources">{"".join(rows)}</table>'


def _components(sep, command):
    """The blind fit's components, their sources and clips, and the --group command."""
    mode, fitted = sep.mode, sep.fitted
    if mode.key != "blind":
        return ""
    out = ["<h2>Components</h2>"]
    K = fitted.W.shape[1]
    if fitted.H is None:
        return out[0] + ("<p>This file is longer than one fit takes, so its components were "
                         "learned on excerpts of it: the page shows the pooled spectrograms only, "
                         "and <code>--group</code> cannot be used for it.</p>")
    if K > MAX_SHOWN_COMPONENTS:
        return out[0] + (f"<p>{K} components are more than a page can show one by one (at most "
                         f"{MAX_SHOWN_COMPONENTS}, each with a figure and a clip): the page shows "
                         "the spectrograms and the sources' shares only.</p>")
    refined = K != mode.n_components
    if refined:
        out.append(f"<p>The mixture sounded sustained, so its {mode.n_components} components were "
                   f"refined into the {K} of a finer fit, shown here. <code>--group</code> names "
                   f"the components of the first fit ('audionmf plot' draws them), not these.</p>")
    else:
        out.append("<p>Listen to each component, give it to a source, and rerun with the command "
                   "below: it fits the same components and groups them as chosen here.</p>")
    analysis = mode.analysis
    rows, c = mode.rows, analysis.context
    frequencies = bin_frequencies(sr=sep.signal.sr, n_fft=analysis.stft.n_fft)[:rows]
    times = frame_times(fitted.H.shape[1], sr=sep.signal.sr, hop_length=analysis.stft.hop_length)
    colors = [f"C{s}" for s in range(len(mode.names))]
    items = []
    for k in range(K):
        label = int(fitted.labels[k])
        fig = plot.component(fitted.W[c * rows:(c + 1) * rows, k], fitted.H[k], frequencies=frequencies,
                             times=times, color=colors[label % 10])
        clip, start = component_clip(sep.signal, mode, fitted, k)
        choice = "".join(f'<option value="{s}"{" selected" * (s == label)}>{_e(name)}</option>'
                         for s, name in enumerate(mode.names))
        select = (f'<span>{_e(mode.names[label])}</span>' if refined else
                  f'<select data-k="{k}" aria-label="source of component {k}">{choice}</select>')
        items.append(
            f'<div class="component"><div class="label"><b>component {k}</b> &rarr; {select}'
            f'<br>{_player("data:audio/flac;base64," + base64.b64encode(clip).decode(), "audio/flac")}'
            f'<br><small>from {start:.1f} s</small></div>'
            f'{_figure(fig, f"template and activation of component {k}", size=(8, 1.5))}</div>')
    out.append("".join(items))
    if not refined:
        groups = [[k for k in range(K) if fitted.labels[k] == s] for s in range(len(mode.names))]
        flags = "".join(f" --group {group_ranges(g)}" for g in groups if g)
        base = shlex.join(command + ["--components", str(K)]) if command else f"--components {K}"
        out.append("<h3>Rerun with this grouping</h3>"
                   f'<pre id="rerun">{_e((base + flags).strip())}</pre>'
                   '<p class="meta" id="rerun-note"></p>'
                   f'<script type="application/json" id="rerun-data">'
                   f'{_json({"base": base, "sources": len(mode.names)})}</script>'
                   f"<script>{_REGROUP_JS}</script>")
    return "".join(out)


def component_clip(signal, mode, fitted, k, seconds=CLIP_SECONDS, sr=CLIP_SR):
    """The mixture masked by component ``k`` alone, over its loudest stretch.

    The mask is the component's share of the model, ``(W_k H_k) ** p / sum_j
    (W_j H_j) ** p`` with the separation's mask power ``p``: what the component
    would be as a source of its own.

    Returns
    -------
    (bytes, float)
        A FLAC file (16-bit, mono, at ``sr`` or the signal's lower rate) of at
        most ``seconds``, and where it starts in the signal, in seconds.
    """
    params, c = mode.analysis.stft, mode.analysis.context
    W, H = fitted.W, fitted.H
    n_frames = H.shape[1]
    length = max(1, min(n_frames, int(round(seconds * signal.sr / params.hop_length))))
    energy = np.concatenate([[0.0], np.cumsum(H[k] * W[:, k].sum())])
    t0 = int(np.argmax(energy[length:] - energy[:-length]))
    start, n = t0 * params.hop_length, min((length - 1) * params.hop_length, signal.n_samples)
    n = max(n, 1)
    y = signal.read(start, start + n)
    X = stft(y, n_fft=params.n_fft, hop_length=params.hop_length, window=params.window)
    h = H[:, t0:t0 + X.shape[-1]]
    h = np.pad(h, ((0, 0), (0, X.shape[-1] - h.shape[1])))
    mask = _component_mask(W, h, k, mode.mask_power, c)
    if mask.shape[0] < X.shape[-2]:  # above the templates' band: the top band's share
        mask = np.concatenate([mask, np.repeat(mask[-1:], X.shape[-2] - mask.shape[0], axis=0)])
    part = istft(X * mask, length=n, n_fft=params.n_fft, hop_length=params.hop_length,
                 window=params.window).mean(axis=0)
    rate = min(sr, signal.sr)
    part = resample(part, signal.sr, rate)
    fade = min(len(part) // 2, rate // 100)  # 10 ms: no click at either end
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        part[:fade] *= ramp
        part[-fade:] *= ramp[::-1]
    peak = np.max(np.abs(part)) if len(part) else 0.0
    if peak > 1.0:
        part = part / peak
    buffer = io.BytesIO()
    sf.write(buffer, part, rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue(), start / signal.sr


def _component_mask(W, H, k, p, context):
    """Component ``k``'s soft mask among all components, ``(W_k H_k)**p / sum_j
    (W_j H_j)**p``. Without context the sum is ``W**p @ H**p``, one product, instead
    of every component's spectrogram (K of them for each of K clips)."""
    if context:
        return wiener_masks(W, H, np.arange(W.shape[1]), mask_power=p, context=context)[k]
    W, H = np.asarray(W, dtype=np.float64), np.asarray(H, dtype=np.float64)
    top = W.max(axis=0) * H.max(axis=1)  # scaled by the largest component: no overflow
    scale = float(top.max()) if top.size and top.max() > 0 else 1.0
    Wp = (W / scale ** 0.5) ** p
    Hp = (H / scale ** 0.5) ** p
    total = Wp @ Hp
    own = np.outer(Wp[:, k], Hp[k])
    return np.divide(own, total, out=np.full(total.shape, 1.0 / W.shape[1]), where=total > 0)


def group_ranges(indices):
    """``--group``'s spelling of component numbers: ``[0, 1, 2, 5]`` -> ``'0-2,5'``.

    >>> group_ranges([7, 0, 1, 2, 5])
    '0-2,5,7'
    """
    indices = sorted(int(i) for i in indices)
    parts, i = [], 0
    while i < len(indices):
        j = i
        while j + 1 < len(indices) and indices[j + 1] == indices[j] + 1:
            j += 1
        parts.append(str(indices[i]) if i == j else f"{indices[i]}-{indices[j]}")
        i = j + 1
    return ",".join(parts)


def _parameters(sep, parameters, command, grouping=()):
    mode, analysis = sep.mode, sep.mode.analysis
    rows = {"mode": mode.key, "sources": ", ".join(mode.names),
            "components": sep.fitted.W.shape[1],
            "divergence (beta)": f"{analysis.beta:g}", "spectrogram power": f"{analysis.power:g}",
            "n_fft": analysis.stft.n_fft, "hop": analysis.stft.hop_length,
            "window": analysis.stft.window, "mask power": f"{mode.mask_power:g}",
            "most iterations": mode.max_iter,
            "fitted on": "the whole signal" if sep.fitted.H is not None else "excerpts",
            **(parameters or {}),
            "time taken": f"{sep.seconds:.1f} s", "audionmf": __version__}
    if command:
        rows["command"] = shlex.join(list(command) + list(grouping))
    return "<table class=\"params\">" + "".join(
        f"<tr><th>{_e(key)}</th><td><code>{_e(value)}</code></td></tr>" for key, value in rows.items()
    ) + "</table>"


def read_summary(path):
    """The summary a report page holds (input, duration, sources, seconds, mode,
    version), or None if ``path`` is no readable report."""
    try:
        with open(path, encoding="utf-8") as handle:
            found = _SUMMARY.search(handle.read())
        return json.loads(found.group(1)) if found else None
    except (OSError, ValueError):
        return None


def index_page(entries, folder):
    """The page of a batch: a row per input linking its report.

    Parameters
    ----------
    entries : list of (str, str or None, str or None)
        The input, its report (or None) and the error it failed with (or None).
    folder : str
        Where the page goes (the links are relative to it).

    Returns
    -------
    bytes
    """
    rows = []
    for path, report, error in entries:
        summary = read_summary(report) if report and error is None else None
        if summary is None:
            why = error or "no report"
            rows.append(f'<tr class="failed"><td>{_e(path)}</td><td colspan="3">{_e(why)}</td></tr>')
            continue
        link = _url(_relative(report, folder))
        rows.append(f'<tr><td><a href="{link}">{_e(path)}</a></td>'
                    f'<td>{_duration(summary["duration"])}</td>'
                    f'<td>{_e(", ".join(summary["sources"]))}</td>'
                    f'<td>{summary["seconds"]:.1f} s</td></tr>')
    body = (f"<h1>audionmf: {len(entries)} files separated</h1>"
            '<table class="index"><tr><th>input</th><th>duration</th><th>sources</th>'
            f'<th>time taken</th></tr>{"".join(rows)}</table>'
            f'<p class="meta">audionmf {_e(__version__)}</p>')
    return _page("audionmf: separations", body, {"files": len(entries)}).encode()


def scores_page(result, reference_dir, estimate_dir):
    """The page of ``audionmf evaluate --report``: the scores per source (dB), with
    a link to the separation's own report where the estimates' folder holds one.

    Parameters
    ----------
    result : dict
        What :func:`audionmf.evaluate.evaluate_folders` returns.
    reference_dir, estimate_dir : str

    Returns
    -------
    bytes
    """
    columns = score_columns(result)
    head = "".join(f"<th>{title}</th>" for _, title in columns)
    rows = [f'<tr><th>{_e(name)}</th><td>{_e(scores["estimate"])}</td>'
            + "".join(f"<td>{scores[k]:.2f}</td>" for k, _ in columns) + "</tr>"
            for name, scores in result["sources"].items()]
    rows.append('<tr class="mean"><th>mean</th><td></td>'
                + "".join(f"<td>{result['mean'][k]:.2f}</td>" for k, _ in columns) + "</tr>")
    notes = []
    for what, names in (("no estimate for", result["ignored"]["references"]),
                        ("no reference for", result["ignored"]["estimates"])):
        if names:
            notes.append(f"<p>{what}: {_e(', '.join(names))}</p>")
    own = os.path.join(estimate_dir, REPORT_NAME)
    link = f'<p><a href="{REPORT_NAME}">the separation\'s report</a></p>' if os.path.isfile(own) else ""
    body = (f"<h1>Scores of {_e(estimate_dir)}</h1>"
            f'<p class="meta">against {_e(reference_dir)}: BSS Eval v3 (as mir_eval computes it), in dB, higher is '
            f"better; audionmf {_e(__version__)}</p>"
            f'<table class="scores"><tr><th>source</th><th>estimate</th>{head}</tr>{"".join(rows)}'
            f"</table>{''.join(notes)}{link}")
    return _page(f"audionmf: scores of {os.path.basename(os.path.normpath(estimate_dir))}", body,
                 {"scores": result["mean"]}).encode()


# --------------------------------------------------------------------- helpers
def _mixture_player(path, folder):
    """The input's player, by a relative link, where browsers play its format."""
    if os.path.splitext(path)[1].lower() not in PLAYABLE:
        return f"<small>{_e(path)} (browsers do not play this format)</small>"
    return _player(_relative(path, folder), _mime(path))


def _player(src, mime):
    if not src.startswith(("data:", "file:")):
        src = _url(src)
    return f'<audio controls preload="metadata"><source src="{_e(src)}" type="{mime}"></audio>'


def _relative(path, folder):
    """``path`` relative to ``folder``, or its file:// URI where there is none (another drive)."""
    try:
        return os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    except ValueError:
        return "file:" + urllib.request.pathname2url(os.path.abspath(path))


def _mime(path):
    return _MIME.get(os.path.splitext(path)[1].lower(), "audio/wav")


def _figure(fig, alt, size=None):
    """A figure as an inline PNG."""
    if size is not None:
        fig.set_size_inches(*size)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _duration(seconds):
    minutes, rest = divmod(float(seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{rest:04.1f}" if hours else f"{minutes}:{rest:04.1f}"


def _e(value):
    """Text for the page: escaped, and a file name that is not UTF-8 shown with its
    undecodable bytes as escapes (the page is UTF-8)."""
    return html.escape(str(value).encode("utf-8", "backslashreplace").decode("utf-8"))


def _url(path):
    """A relative link to ``path``: its bytes percent-encoded, so that a name that is not
    UTF-8 links to the very file."""
    return urllib.parse.quote(os.fsencode(path.replace(os.sep, "/")))


def _json(value):
    """JSON safe inside a <script> element."""
    return json.dumps(value).replace("</", "<\\/")


def _page(title, body, summary):
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style>"
            f'<script type="application/json" id="audionmf-summary">{_json(summary)}</script>'
            f"</head><body>\n{body}\n</body></html>\n")


_CSS = """
body{font:15px/1.4 system-ui,sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.meta{color:#666}img{max-width:100%;height:auto;display:block}
table{border-collapse:collapse}th{text-align:left;padding:.2em .8em .2em 0;vertical-align:top}
td{padding:.2em .8em .2em 0}.params td,.params th{border-bottom:1px solid #eee}
.index td,.index th,.scores td,.scores th{border-bottom:1px solid #eee;padding:.3em .8em}
.scores td{text-align:right}.mean{font-weight:bold}.failed{color:#a00}
.component{display:flex;align-items:center;gap:1em;border-bottom:1px solid #eee;padding:.3em 0}
.component .label{min-width:310px}.component img{max-width:640px}
pre{background:#f4f4f4;padding:.6em;white-space:pre-wrap;word-break:break-all}
audio{width:300px;height:36px}
"""

#: Rebuilds the rerun command when a component is given to another source.
_REGROUP_JS = """
(function () {
  var data = JSON.parse(document.getElementById("rerun-data").textContent);
  var selects = Array.prototype.slice.call(document.querySelectorAll("select[data-k]"));
  function ranges(list) {
    var parts = [], i = 0;
    while (i < list.length) {
      var j = i;
      while (j + 1 < list.length && list[j + 1] === list[j] + 1) { j++; }
      parts.push(i === j ? String(list[i]) : list[i] + "-" + list[j]);
      i = j + 1;
    }
    return parts.join(",");
  }
  function update() {
    var groups = [];
    for (var s = 0; s < data.sources; s++) { groups.push([]); }
    selects.forEach(function (el) { groups[Number(el.value)].push(Number(el.dataset.k)); });
    var kept = groups.filter(function (g) { return g.length; });
    var flags = kept.map(function (g) { return " --group " + ranges(g); }).join("");
    document.getElementById("rerun").textContent = (data.base + flags).trim();
    document.getElementById("rerun-note").textContent = kept.length < data.sources ?
      (data.sources - kept.length) + " source(s) hold no component: the rerun gives " +
      kept.length + " source(s), numbered in this order." : "";
  }
  selects.forEach(function (el) { el.addEventListener("change", update); });
})();
"""
