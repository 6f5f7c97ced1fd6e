# Hardware-in-the-loop rig: emulators, paced serial line, targets and the pytest plugin.
