"""The public names of `import lite_whisper` resolve (they are imported lazily)."""

import importlib
import pkgutil

import pytest

import lite_whisper


@pytest.fixture(scope="module", autouse=True)
def every_module_imported():
    """A subpackage import sets an attribute on the package; no public name may be shadowed by one."""
    for module in pkgutil.walk_packages(lite_whisper.__path__, "lite_whisper."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)


@pytest.mark.parametrize("name", [n for n in lite_whisper.__all__ if n != "__version__"])
def test_public_name_resolves(name):
    """Each public name is the object its defining module holds (not a shadowing subpackage)."""
    defining = importlib.import_module(lite_whisper._EXPORTS[name])
    assert getattr(lite_whisper, name) is getattr(defining, name)
    assert getattr(lite_whisper, name).__module__ == defining.__name__


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lite_whisper.nope
