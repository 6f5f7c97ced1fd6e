# HAL implementations: board (machine.*), posix_serial (ptys, USB adapters), mem (tests, simulator).
