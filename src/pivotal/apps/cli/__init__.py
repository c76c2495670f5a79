"""The ``pivotal`` command line. Commands only parse arguments and call library functions."""

from pivotal.apps.cli.main import app, main

__all__ = ["app", "main"]
