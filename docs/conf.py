"""Sphinx configuration: Markdown (MyST) pages plus API reference from docstrings."""

from __future__ import annotations

project = "tsaccess"
author = "tsaccess developers"
release = "0.1.0"
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_google_docstring = True
html_theme = "alabaster"
suppress_warnings = ["myst.xref_missing"]
nitpicky = False
