import pytest

pytest_plugins = ["tests.mpy_dual", "hil.pytest_plugin"]


def pytest_configure(config: pytest.Config) -> None:
    # CI and the README's command run everything; `-m "not slow"` leaves these out locally.
    config.addinivalue_line(
        "markers",
        "slow: long validations and emulated-board scenarios; always in CI, left out by -m 'not slow'",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # pytest-xdist (`--dist loadscope --no-loadscope-reorder`, pyproject.toml) hands out whole
    # modules in collection order. The slow validations are the longest: started first, the
    # workers finish together instead of one waiting for the other at the end.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable
