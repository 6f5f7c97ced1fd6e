"""Targets: where the station firmware runs during a HIL test, one module each.

- ``unix`` (:class:`UnixTarget`): the firmware under the MicroPython unix port, as a
  separate process (``hil/unix_target_main.py``). Its serial ports are the line
  emulator's ptys; its flash is a file-backed LittleFS image that survives restarts and
  power cuts.
- ``board`` (:class:`BoardTarget`): a controller on a USB serial port. The rig builds and
  flashes the image with ``host.deploy.build`` / ``host.deploy.flash`` (mpremote), resets the board
  (DTR, RTS or a relay command), starts the station with the HIL channel at the board's
  REPL, and the emulators answer on USB-RS485 adapters wired to the board's RS-485 lines.
- ``qemu`` (``hil.targets.qemu.QemuTarget``): the 32-bit single-precision build on QEMU's
  ``mps2-an385``, booted through ``main.py``; its UARTs are QEMU tty backends on the line
  emulator's ptys, its flash (PSRAM) a shared file that survives power cuts.
- ``pico`` (``hil.targets.pico.PicoTarget``): the real ``RPI_PICO`` MicroPython image
  under the rp2040py emulator (``pip install -e '.[dev]'``); imported from its module
  only, so the other targets do not load the emulator.

``base`` holds what they share: the operator/status channel (requests are JSON lines,
answers and status lines start with ``@@HIL ``, see ``hil/unix_target_main.py``) and the
:class:`Target` interface; ``Target.status()`` is the latest status line:
``{"t": ms since boot, "s": supervisor.status(), ...}``.
"""

from hil.targets.base import EXIT_FATAL, LAUNCHER, ROOT, TAG, Channel, Target, TargetError
from hil.targets.board import BoardTarget
from hil.targets.unix import UnixTarget, micropython_exe

__all__ = ["EXIT_FATAL", "LAUNCHER", "ROOT", "TAG", "BoardTarget", "Channel", "Target", "TargetError",
           "UnixTarget", "micropython_exe"]
