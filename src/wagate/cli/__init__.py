"""The ``wagate`` command line."""
