# Type stub of the compiled kernel (host/plant/_fastplant.pyx).
from typing import Any

import numpy as np

def compiled() -> bool: ...

class RackKernel:
    arrays: dict[str, np.ndarray]
    def __init__(self, arrays: dict[str, np.ndarray], scalars: dict[str, float]) -> None: ...
    def step(self, dt: float, nsub: int, s_lo: int, s_hi: int) -> None: ...
    def first_crossing(
        self, kind: int, target: float, h: float, max_steps: int, watch: Any, s_lo: int, s_hi: int
    ) -> tuple[float, int]: ...

class StatusRegs:
    def __init__(
        self, a: dict[str, np.ndarray], t: np.ndarray, pack_id: np.ndarray, code: np.ndarray,
        per_station: int, spread_a: float, spread_b: float,
    ) -> None: ...
    def read_into(self, slot: int, address: int, count: int, out: Any) -> None: ...

class ControlWrite:
    def __init__(
        self, a: dict[str, np.ndarray], hb_value: np.ndarray, i_max: int, v_max: int, p_max: int
    ) -> None: ...
    def apply(self, slot: int, frame: Any, offset: int) -> bool: ...
