"""pytest configuration for the doctests of the package (``--doctest-modules``).

Here rather than at the top of the checkout: a conftest.py outside a package is
imported as the module ``conftest``, which tests/conftest.py is too (the tests import
it by that name). scikit-learn keeps its conftest.py in its package the same way.
"""
import importlib.util

# sklearn.py raises ImportError without scikit-learn (an optional extra), which would
# make collecting its doctest an error: leave the module out when scikit-learn is missing.
collect_ignore = [] if importlib.util.find_spec("sklearn") else ["sklearn.py"]
