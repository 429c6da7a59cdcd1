"""spec + board + zoo -> image."""
