"""The live page's server: Starlette on uvicorn, on its own thread and event loop.

Routes: ``/`` the page, ``/static/*`` its script and style, ``/events`` the snapshots as
server-sent events (the browser's EventSource reconnects by itself after a restart),
``/snapshot`` the latest one as JSON, and ``POST /control`` the page's controls
(``{"action": "pause"}``), each one a callable the caller hands over. A replay (``frames``:
a finished run's view frames, host.live.record) adds ``/frames``, their times, and
``/frame/{i}``, one frame; the page then shows a scrubber instead of following a stream.

The engine's thread hands each snapshot over with ``publish``; it is encoded once, on the
server's loop, and every open page gets the newest one (a slow page skips, never queues).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from host.live import DEFAULT_HOST, parse_listen  # noqa: F401  (the CLI's type)

STATIC = Path(__file__).resolve().parent / "static"
KEEPALIVE_S = 2.0  # a comment line on an idle stream: a closed page is noticed at the next write
START_TIMEOUT_S = 20.0

Control = Callable[[dict[str, Any]], Any]


class LiveError(Exception):
    """The server cannot start (a port in use, an address not on this machine)."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or LiveError saying why not (checked before any run starts)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise LiveError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart within TIME_WAIT
    try:
        sock.bind(addr)
        sock.listen(64)
    except OSError as e:
        sock.close()
        why = "the port is in use" if e.errno == 98 else (e.strerror or str(e))
        raise LiveError(f"cannot listen on {host}:{port}: {why}") from None
    sock.set_inheritable(False)
    return sock


class _Hub:
    """The newest snapshot, encoded, and a wake-up for the streams waiting for the next."""

    def __init__(self) -> None:
        self.data = b""
        self.version = 0
        self.changed = asyncio.Event()
        self.closing = False
        self.clients = 0

    def set(self, snap: dict[str, Any]) -> None:
        snap["clients"] = self.clients
        self.data = json.dumps(snap, separators=(",", ":"), allow_nan=False,
                               default=str).encode()
        self.version += 1
        self.wake()

    def wake(self) -> None:
        old, self.changed = self.changed, asyncio.Event()
        old.set()


class LiveServer:
    """Serve the live page on ``host:port`` (0: any free port) until ``stop``."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = 0,
                 controls: Mapping[str, Control] | None = None, title: str = "swapstation live",
                 frames: list[bytes] | None = None) -> None:
        self.sock = bind(host, port)
        self.frames = frames
        self.frame_times = [json.loads(f)["t_s"] for f in frames] if frames else []
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        self.controls = dict(controls or {})
        self.title = title
        self._hub = _Hub()
        self._loop = asyncio.new_event_loop()
        config = uvicorn.Config(self._app(), log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="live-server", daemon=True)
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    # --- lifecycle ---
    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._server.serve(sockets=[self.sock]))
        except BaseException as e:  # noqa: BLE001  reported by start/stop, not lost on a thread
            self.error = e
        finally:
            self._loop.close()

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(START_TIMEOUT_S / 0.01)):
            if self._server.started or not self._thread.is_alive():
                break
            deadline.wait(0.01)
        if not self._server.started:
            raise LiveError(f"the live server did not start: {self.error!r}")
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            try:
                self._loop.call_soon_threadsafe(self._close)
            except RuntimeError:  # the loop already ended
                pass
            self._thread.join(10.0)
        self.sock.close()

    def _close(self) -> None:
        self._hub.closing = True
        self._hub.wake()
        self._server.should_exit = True

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the engine's side ---
    def publish(self, snap: dict[str, Any]) -> None:
        """Hand a snapshot over (any thread); the server encodes and sends it."""
        try:
            self._loop.call_soon_threadsafe(self._hub.set, snap)
        except RuntimeError:  # the server has stopped: nobody to show it to
            pass

    @property
    def clients(self) -> int:
        return self._hub.clients

    # --- the app ---
    def _app(self) -> Starlette:
        hub = self._hub

        async def page(request: Request) -> Response:
            return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

        async def snapshot(request: Request) -> Response:
            return Response(hub.data or b"null", media_type="application/json")

        async def events(request: Request) -> Response:
            async def stream() -> AsyncIterator[bytes]:
                hub.clients += 1
                try:
                    yield b"retry: 1000\n\n"  # EventSource: reconnect a second after a loss
                    seen = 0
                    while not hub.closing:
                        if hub.version != seen and hub.data:
                            seen = hub.version
                            yield b"data: " + hub.data + b"\n\n"
                        changed = hub.changed
                        try:
                            await asyncio.wait_for(changed.wait(), KEEPALIVE_S)
                        except TimeoutError:
                            yield b": idle\n\n"
                finally:
                    hub.clients -= 1

            return StreamingResponse(stream(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

        async def control(request: Request) -> Response:
            try:
                msg = json.loads(await request.body())
            except ValueError as e:
                return JSONResponse({"error": f"not JSON: {e}"}, status_code=400)
            if not isinstance(msg, dict) or not isinstance(msg.get("action"), str):
                return JSONResponse({"error": 'a control is a JSON object {"action": NAME, ...}'},
                                    status_code=400)
            action = msg["action"]
            fn = self.controls.get(action)
            if fn is None:
                known = ", ".join(sorted(self.controls)) or "none"
                return JSONResponse({"error": f"unknown control {action!r}; known: {known}"}, status_code=400)
            try:
                result = fn(msg)
            except ValueError as e:
                return JSONResponse({"error": f"{action}: {e}"}, status_code=400)
            return JSONResponse({"ok": True, "action": action, "result": result})

        async def info(request: Request) -> Response:
            return JSONResponse({"title": self.title, "controls": sorted(self.controls),
                                 "replay": len(self.frames) if self.frames else None})

        async def frame_times(request: Request) -> Response:
            if not self.frames:
                return JSONResponse({"error": "not a replay"}, status_code=404)
            return JSONResponse({"t_s": self.frame_times})

        async def frame(request: Request) -> Response:
            frames = self.frames or []
            try:
                i = int(request.path_params["i"])
            except ValueError:
                return JSONResponse({"error": "a frame number is a whole number"}, status_code=400)
            if not 0 <= i < len(frames):
                return JSONResponse({"error": f"no frame {i}: this replay has {len(frames)}"},
                                    status_code=404)
            return Response(frames[i], media_type="application/json")

        return Starlette(routes=[
            Route("/", page),
            Route("/info", info),
            Route("/snapshot", snapshot),
            Route("/events", events),
            Route("/control", control, methods=["POST"]),
            Route("/frames", frame_times),
            Route("/frame/{i}", frame),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ])
