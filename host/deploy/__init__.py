"""Putting the firmware on a controller: ``swapstation build`` (build.py) and ``flash``
(flash.py), the programs they run (tools.py), the MicroPython qemu port for an emulated
Cortex-M3 board (qemu_build.py, qemu_run.py) and the Debian packages a tool needs (debian.py)."""
