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
