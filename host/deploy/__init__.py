"""Deploy targets beyond a real board: MicroPython builds for emulated controllers."""
