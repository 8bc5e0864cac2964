"""The package's shape: imports run one way through the layers, no module is too long,
and a new mode takes one file and a registry entry."""
import ast
import os
import re

import numpy as np
import pytest

import audionmf
from audionmf import ParameterError, separate
from audionmf.cli import main
from audionmf.modes import MODES, Fitted, Mode
from audionmf.analysis import Analysis

PACKAGE = os.path.dirname(audionmf.__file__)
ROOT = os.path.dirname(PACKAGE)
MAX_LINES = 600

#: The layers of docs/architecture.md, lowest first: a module imports only from its
#: own layer or lower ones (and the cycle check below keeps a layer acyclic).
LAYERS = [
    {"_version", "_validation", "_kernels", "_kernels_numpy", "_lazy", "_threads", "limits"},
    {"_engine", "nmf", "_writing", "io", "spectrogram"},
    {"analysis", "masks", "sourcefilter", "vote", "adapt"},
    {"grouping", "models", "_learning"},
    {"modes", "modes.base", "modes.blind", "modes.supervised", "modes.drums", "modes.denoise",
     "modes.vocals"},
    {"_blocks"},
    {"separate", "features"},
    {"evaluate", "plot", "report", "_batch", "__main__", "cli", "cli._common", "cli.separate",
     "cli.commands", "cli.denoise", "sklearn"},
]


def modules():
    """Module name (relative to the package) -> path, for every module of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        if "__pycache__" in folder or os.path.basename(folder) == "data":
            continue
        for name in files:
            if name.endswith(".py") and name != "conftest.py":  # (pytest's, for the doctests)
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, PACKAGE)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                found[".".join(parts)] = path
    return found


def imports(name, path, known):
    """The package's modules that ``name`` imports anywhere in it (functions too)."""
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("audionmf"):
                module = node.module[len("audionmf."):] if node.module != "audionmf" else ""
            else:
                continue
            candidates = [module] + [f"{module}.{a.name}".strip(".") for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name[len("audionmf."):] for a in node.names if a.name.startswith("audionmf.")]
        else:
            continue
        targets.update(c for c in candidates if c in known and c != name)
    # a submodule that imports its own package's __init__ is not a cycle of the layers
    return {t for t in targets if not (t and name.startswith(t + "."))}


def graph():
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items() if name}


def test_every_module_has_a_layer():
    placed = set().union(*LAYERS)
    missing = sorted(set(graph()) - placed)
    assert not missing, f"modules with no layer in LAYERS (and docs/architecture.md): {missing}"


def test_imports_run_one_way():
    layer = {name: i for i, names in enumerate(LAYERS) for name in names}
    upward = [f"{a} -> {b}" for a, targets in graph().items() for b in targets
              if layer.get(b, -1) > layer.get(a, len(LAYERS))]
    assert not upward, f"imports against the layers: {upward}"


def test_no_import_cycle():
    edges = graph()
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)


def test_no_module_is_too_long():
    long = {name: n for name, path in modules().items() if (n := sum(1 for _ in open(path))) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_runtime_dependencies_are_imported():
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        declared = tomllib.load(handle)["project"]["dependencies"]
    names = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower().replace("-", "_") for d in declared}
    used = set()
    for path in modules().values():
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Import):
                used.update(a.name.split(".")[0].lower() for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                used.add(node.module.split(".")[0].lower())
    assert not sorted(names - used), f"declared but never imported: {sorted(names - used)}"


# --------------------------------------------------------------------------- a new mode
class Halves(Mode):
    """A trivial mode, as a newcomer would write one: the mixture in two equal halves.
    One class and one entry in MODES; the library, the command line's choices and
    checks and the output names follow."""

    key = "halves"
    selected_by = "two_stems"
    two_stems = "halves"
    decides = "halves are halves"

    @classmethod
    def source_names(cls, options):
        return ["first_half", "second_half"]

    def configure(self, analysis_options, spell=None):
        self.analysis = Analysis.from_arguments(self.sr, **analysis_options)
        self.names = self.source_names({})

    def needs_fit(self, whole):
        return False

    def without_fit(self):
        return Fitted(W=None, labels=None)

    def activations(self, fitted, V):
        return np.zeros((0, V.shape[1]))

    def masks(self, fitted, H, X, h_span, x_span):
        n = h_span.stop - h_span.start
        return np.full((2, self.rows, n), 0.5)


@pytest.fixture
def halves(monkeypatch):
    monkeypatch.setitem(MODES, "halves", Halves)


def test_a_new_mode_is_one_class_and_a_registry_entry(halves, tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = rng.standard_normal((2, 8000))
    sources = separate(y, 8000, two_stems="halves", n_fft=512)
    assert list(sources) == ["first_half", "second_half"]
    np.testing.assert_allclose(sources["first_half"], y / 2, atol=1e-5)
    np.testing.assert_allclose(sum(sources.values()), y, atol=1e-12)
    with pytest.raises(ParameterError, match="n_sources cannot be used with two_stems: halves are halves"):
        separate(y, 8000, two_stems="halves", n_sources=3)
    # the command line: the choice, its conflicts, its output names
    import soundfile as sf

    sf.write(tmp_path / "mix.wav", y.T, 8000, subtype="FLOAT")
    assert main(["separate", str(tmp_path / "mix.wav"), "-o", str(tmp_path / "out"),
                 "--two-stems", "halves", "-q"]) == 0
    assert sorted(os.listdir(tmp_path / "out" / "mix")) == ["first_half.wav", "second_half.wav"]
    assert main(["separate", str(tmp_path / "mix.wav"), "--two-stems", "halves", "--sources", "3"]) == 2
    assert "--sources cannot be used with --two-stems: halves are halves" in capsys.readouterr().err
    assert main(["separate", str(tmp_path / "mix.wav"), "-o", str(tmp_path / "out"),
                 "--two-stems", "halves", "--skip-existing", "-q"]) == 0  # its names are known


def test_without_the_entry_the_mode_is_unknown(capsys):
    with pytest.raises(ParameterError, match=r"two_stems='halves': expected one of \[[^\]]*'drums'"):
        separate(np.ones(4000), 8000, two_stems="halves")
    assert main(["separate", "x.wav", "--two-stems", "halves"]) == 2
    assert "invalid choice: 'halves'" in capsys.readouterr().err
