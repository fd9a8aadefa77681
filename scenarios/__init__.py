"""The scenarios shipped with physres, one runnable file per physical story.

In a checkout they are the files of this folder (``python scenarios/NAME.py --quick``); an
installed physres carries the same files as the package ``physres.scenarios``. Run them with
``physres run NAME``; ``physres run --list`` lists them. How to write one: docs/scenarios.md.
"""
