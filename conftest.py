"""pytest configuration for the whole checkout (the doctests of the package included)."""
import importlib.util

# audionmf/sklearn.py raises ImportError without scikit-learn (an optional extra), which
# would make collecting its doctest an error: leave the module out when it is missing.
collect_ignore = [] if importlib.util.find_spec("sklearn") else ["audionmf/sklearn.py"]
