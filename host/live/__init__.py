"""The live station view: one browser page that follows a simulation (and later a HIL run).

``snapshot`` builds a small JSON-able view of the station from what the firmware already
exposes (supervisor, rack, bay, journal) and the plant's state; ``pacer`` runs the engine's
virtual time at a chosen ratio to wall time and takes those snapshots between steps;
``server`` serves the page (``static/``) and streams the snapshots to it over server-sent
events, from a uvicorn server on its own thread and event loop.
"""

from __future__ import annotations

DEFAULT_HOST = "127.0.0.1"  # loopback unless another address is asked for


def parse_listen(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` -> (host, port); host defaults to loopback. ValueError naming the fault."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]") if sep else DEFAULT_HOST
    if not host:
        raise ValueError(f"empty host in {text!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port must be a number, got {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0..65535, got {port}")
    return host, port
