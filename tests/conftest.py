pytest_plugins = ["tests.mpy_dual"]
