"""Sphinx configuration of fastem's API reference (``python -m sphinx -W docs
docs/_build``; the tests build it with warnings as errors)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import fastem  # noqa: E402

project = "fastem"
author = "the fastem developers"
release = version = fastem.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "inherited-members": False,
                           "undoc-members": False, "show-inheritance": False}
exclude_patterns = ["_build"]
html_theme = "alabaster"
