"""companion: the heavy cores of the ML Systems book.

Each module is one idea of the book and is checked in ``tests/`` against the library that
production uses. Chapters import from here; they never carry a second copy of a core.
"""

__version__ = "0.1.0"
