"""The HTTP API and the page: FastAPI routes over a `PlayEngine`; the page's files are served from `static/`.

Frames travel as PNG data URLs inside the JSON replies (a 64x64 frame is ~2 KB). Refused requests
answer 4xx with `{"detail": "<what is wrong>"}`; nothing a request sends stops the server.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, StrictFloat
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ivideogpt.play.engine import PlayEngine, PlayError
from ivideogpt.play.session import Session

STATIC = Path(__file__).parent / "static"
MEDIA_TYPES = {"gif": "image/gif", "mp4": "video/mp4"}
MAX_BODY_BYTES = 64 * 1024
"""the API's request bodies hold a few numbers; parsing a huge one would take gigabytes of memory."""


class BodyLimit:
    """ASGI middleware: refuse a request body over `limit` bytes with a 413 as it arrives, before it is parsed."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, f"request body over {self.limit} bytes: the API takes a few numbers")
            return message

        await self.app(scope, counted if scope["type"] == "http" else receive, send)


class StartRequest(BaseModel):
    """Where a new session starts: `reset` (a fresh Push-T reset from `seed`) or held-out `clip`."""

    model_config = ConfigDict(extra="forbid")
    start: str = "reset"
    seed: int | None = None
    clip: int = 0
    real: bool = False
    """run the real simulator beside the model (Push-T)."""


class StepRequest(BaseModel):
    """One action, and how long the page took from the previous click to showing its frame."""

    model_config = ConfigDict(extra="forbid")
    action: list[StrictFloat]  # numbers only: pydantic would read true / "1" as 1.0
    click_to_frame_ms: float | None = None


def png_url(frame: np.ndarray) -> str:
    """(H, W, 3) uint8 -> a `data:image/png;base64,...` URL."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def session_reply(session: Session, engine: PlayEngine | None = None) -> dict[str, Any]:
    """The page's view of a session: its newest frames, the reward and PSNR curves, and the step's latency."""
    frame, real = session.latest()
    reply: dict[str, Any] = {
        "session": session.id, "start": session.start, "step": len(session.steps),
        "frame": png_url(frame), "real_frame": None if real is None else png_url(real),
        "rewards": [s.reward for s in session.steps], "real_rewards": [s.real_reward for s in session.steps],
        "psnr": [s.psnr for s in session.steps], "actions": [s.action.tolist() for s in session.steps],
        "can_undo": bool(session.steps and session.undo)}
    if engine is not None:
        reply["latency"] = engine.latency.medians()
    return reply


def create_app(engine: PlayEngine) -> FastAPI:
    """The play server of `engine`: the page at `/`, its files under `/static`, the API under `/api`."""

    app = FastAPI(title="ivideogpt play")
    app.add_middleware(BodyLimit)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(PlayError)
    async def refused(request: Request, error: PlayError) -> JSONResponse:
        return JSONResponse({"detail": error.message}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors())
        return JSONResponse({"detail": f"malformed request: {problems}"}, status_code=422)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return dict(engine.model.describe(), sessions=len(engine.store), latency=engine.latency.medians())

    @app.get("/api/latency")
    def latency() -> dict[str, Any]:
        return {"medians": engine.latency.medians(), "counts": engine.latency.counts(),
                "summary": engine.latency.summary(), "batch_sizes": engine.batcher.batch_sizes[-50:]}

    @app.post("/api/sessions")
    def start(request: StartRequest) -> dict[str, Any]:
        session = engine.create(request.start, request.seed, request.clip, request.real)
        return session_reply(session)

    @app.get("/api/sessions/{session_id}")
    def show(session_id: str) -> dict[str, Any]:
        return session_reply(engine.session(session_id))

    @app.post("/api/sessions/{session_id}/step")
    def step(session_id: str, request: StepRequest) -> dict[str, Any]:
        session, _ = engine.step(session_id, request.action, request.click_to_frame_ms)
        return session_reply(session, engine)

    @app.post("/api/sessions/{session_id}/undo")
    def undo(session_id: str) -> dict[str, Any]:
        return session_reply(engine.undo(session_id))

    @app.post("/api/sessions/{session_id}/reset")
    def restart(session_id: str) -> dict[str, Any]:
        return session_reply(engine.restart(session_id))

    @app.delete("/api/sessions/{session_id}", status_code=204)
    def close(session_id: str) -> Response:
        engine.remove(session_id)
        return Response(status_code=204)

    @app.get("/api/sessions/{session_id}/export.{suffix}")
    def export(session_id: str, suffix: str) -> Response:
        data = engine.video(session_id, suffix)
        return Response(data, media_type=MEDIA_TYPES[suffix],
                         headers={"Content-Disposition": f'attachment; filename="ivideogpt-play.{suffix}"'})

    return app
