pytest_plugins = ["tests.mpy_dual", "hil.pytest_plugin"]
