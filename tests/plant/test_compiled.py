"""The compiled kernel is the one in use: no silent fallback to the pure-Python path."""

import importlib.machinery
from pathlib import Path

import pytest

from host.plant import _fastplant
from host.plant.charging import Plant
from host.plant.refkernel import RefKernel


def test_extension_module_is_a_compiled_shared_object():
    path = Path(_fastplant.__file__)
    assert any(path.name.endswith(suffix) for suffix in importlib.machinery.EXTENSION_SUFFIXES), path
    assert isinstance(_fastplant.__loader__, importlib.machinery.ExtensionFileLoader)
    assert _fastplant.compiled() is True


def test_plant_uses_the_compiled_kernel_by_default():
    plant = Plant(1, 2)
    assert plant.backend == "cython"
    assert type(plant.kernel) is _fastplant.RackKernel
    assert type(plant.kernel).__module__ == "host.plant._fastplant"


def test_python_backend_is_only_used_when_asked_for():
    assert type(Plant(1, 2, backend="python").kernel) is RefKernel


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="backend"):
        Plant(1, 2, backend="fortran")
