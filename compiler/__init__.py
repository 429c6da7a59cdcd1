"""spec + board + zoo -> image."""
__version__ = "0.1.0"
