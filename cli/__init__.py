"""The ``aigc`` command: parses, calls the library, renders. No logic of its own."""

from aigcguard.cli.main import main

__all__ = ["main"]
