# Station controller firmware. Runs unchanged on MicroPython (rp2, esp32, unix) and CPython 3.11.
