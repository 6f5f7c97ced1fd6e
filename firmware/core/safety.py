"""Swap-bay safety latches: e-stop, door and light-curtain interlocks, smoke,
manual mode and the power-loss hold (GB/T 29772-2024 8.5, GB/T 51077-2024 12.4).

The e-stop chain and light curtain are hard-wired in the bay's safety relay; the
controller sees them through the bay I/O module (and optionally a pin of its own)
and must stop its sequence the same tick it sees them. Every stop latches: motion
resumes only after the cause is gone *and* an operator acknowledged it, so a
chattering contact or a returning supply never restarts the bay by itself.

``hold`` is a bit set of latched reasons; motion is allowed only when it is 0.
"""

from firmware.compat import const

ESTOP = const(1)  # e-stop chain open (bay module or controller pin)
INTERLOCK = const(2)  # door opened or light curtain broken while guarded
SMOKE = const(4)  # smoke detector alarm (also drives ventilation)
CONFIRM = const(8)  # power returned, manual mode left, or a fault: operator must confirm
COMMS = const(16)  # bay I/O module stopped answering while guarded
MANUAL = const(32)  # manual mode: the sequence is paused, the operator jogs outputs

NAMES = ((ESTOP, "estop"), (INTERLOCK, "interlock"), (SMOKE, "smoke"), (CONFIRM, "confirm"),
         (COMMS, "comms"), (MANUAL, "manual"))


def names(bits):
    """Reason names of a hold bit set, for status and journal."""
    out = []
    for b, n in NAMES:
        if bits & b:
            out.append(n)
    return out


class Safety:
    """Latches stop reasons from the sensor image and operator actions."""

    def __init__(self, smoke_latch=True):
        self.smoke_latch = smoke_latch
        self.hold = CONFIRM  # every boot is "after a power loss": hold until confirmed
        self.manual_key = False  # key switch on the bay module
        self.manual_cmd = False  # manual mode requested by an operator command
        self.estop_di = False  # e-stop pressed now, as the bay module reports it
        self.estop_pin = False  # e-stop pressed now, on the controller's own input
        self.smoke_live = False
        self.guard_live = False  # door open or curtain broken now
        self.comms_lost = False  # bay I/O module offline now

    def sense(self, estop_ok, door_closed, curtain_clear, smoke_clear, manual_key, guarded):
        """Feed the latest inputs; returns the reasons newly latched by this call.
        ``guarded``: the bay is in a step that moves machinery, so the door must be
        closed and the curtain clear."""
        before = self.hold
        self.estop_di = not estop_ok
        self.smoke_live = not smoke_clear
        self.guard_live = not (door_closed and curtain_clear)
        if self.estop_di:
            self.hold |= ESTOP
        if self.smoke_live:
            self.hold |= SMOKE
        elif not self.smoke_latch:
            self.hold &= ~SMOKE
        if guarded and self.guard_live:
            self.hold |= INTERLOCK
        self.manual_key = manual_key
        self._manual()
        return self.hold & ~before

    def pin(self, estop_ok):
        """The controller's own e-stop input, read every tick; returns ESTOP if newly latched."""
        self.estop_pin = not estop_ok
        if self.estop_pin:
            return self.trip(ESTOP)
        return 0

    def trip(self, bits):
        """Latch reasons found elsewhere (controller e-stop pin, a fault); returns the new ones."""
        new = bits & ~self.hold
        self.hold |= bits
        return new

    def comms(self, online, guarded):
        """Bay I/O module health; losing it mid-sequence latches COMMS."""
        self.comms_lost = not online
        if self.comms_lost and guarded:
            return self.trip(COMMS)
        return 0

    def _manual(self):
        if self.manual_key or self.manual_cmd:
            self.hold |= MANUAL
        elif self.hold & MANUAL:
            # Leaving manual: the operator may have moved things, so confirm first.
            self.hold = (self.hold & ~MANUAL) | CONFIRM

    def set_manual(self, on):
        self.manual_cmd = bool(on)
        self._manual()

    def ack(self):
        """Operator reset of the e-stop, interlock and smoke latches whose cause is gone;
        returns the reasons cleared. The sequence then resumes where it stopped."""
        clear = 0
        if not (self.estop_di or self.estop_pin):
            clear |= ESTOP
        if not self.guard_live:
            clear |= INTERLOCK
        if not self.smoke_live:
            clear |= SMOKE
        clear &= self.hold
        self.hold &= ~clear
        return clear

    def confirm(self):
        """Operator confirms the bay's state (after power loss, manual mode, lost comms
        or a fault). Refused while a stop is latched or the module is still silent."""
        if self.hold & ~(CONFIRM | COMMS) or self.comms_lost:
            return False
        self.hold &= ~(CONFIRM | COMMS)
        return True

    def motion_allowed(self):
        return self.hold == 0
