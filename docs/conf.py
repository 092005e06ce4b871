"""
Sphinx configuration of the uhppoted-tunnel documentation.

    .venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html
    .venv/bin/python -m sphinx -W --keep-going -b man docs docs/_build/man

The option reference is generated from the code of this checkout
(docs/_ext/optionsref.py), which is put first on the path.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "_ext"))

from uhppoted_tunnel import __version__  # noqa: E402

project = "uhppoted-tunnel"
author = "uhppoted-tunnel for Python contributors"
copyright = "2026, " + author
version = release = __version__
# the man page's date field: the version, so that a rebuild is identical
today = "uhppoted-tunnel " + __version__

extensions = ["optionsref"]
exclude_patterns = ["_build"]
root_doc = "index"
html_theme = "alabaster"
html_logo = "logo.svg"
html_title = "uhppoted-tunnel " + __version__
html_static_path = []
html_theme_options = {"page_width": "1160px"}
highlight_language = "none"

man_pages = [
    ("man", "uhppoted-tunnel", "relay UHPPOTE access controller requests and events across networks",
     [author], 1),
]
man_show_urls = False
