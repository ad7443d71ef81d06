"""The public names of `import lite_whisper` resolve (they are imported lazily)."""

import pytest

import lite_whisper


@pytest.mark.parametrize("name", [n for n in lite_whisper.__all__ if n != "__version__"])
def test_public_name_resolves(name):
    assert callable(getattr(lite_whisper, name))


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lite_whisper.nope
