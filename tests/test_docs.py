"""Generated documentation is current: `python build.py docs` rewrites it."""
import pytest

from compiler.commands import generated_docs


@pytest.mark.parametrize("path,text", sorted(generated_docs().items()), ids=lambda v: getattr(v, "name", ""))
def test_generated_file_is_current(path, text):
    assert path.exists(), f"{path} is missing; run `python build.py docs`"
    assert path.read_text(encoding="utf-8") == text, f"{path} is stale; run `python build.py docs`"
