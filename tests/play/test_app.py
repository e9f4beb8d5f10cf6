"""The play API over HTTP: a session's life, ten steps, frames that follow the actions, refused requests."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("gym_pusht")

from fastapi.testclient import TestClient  # noqa: E402

from ivideogpt.play.app import create_app  # noqa: E402
from ivideogpt.play.engine import PlayEngine  # noqa: E402


@pytest.fixture
def client(pusht_engine: PlayEngine) -> TestClient:
    with TestClient(create_app(pusht_engine)) as client:
        yield client


def start(client: TestClient, **body) -> dict:
    reply = client.post("/api/sessions", json={"start": "reset", "seed": 5, **body})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_the_page_and_its_files_are_served_locally(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "/static/play.js" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN: every asset is served by us
    for asset, kind in (("play.js", "javascript"), ("play.css", "text/css")):
        reply = client.get(f"/static/{asset}")
        assert reply.status_code == 200 and kind in reply.headers["content-type"]
    info = client.get("/api/info").json()
    assert info["pusht"] and info["action_dim"] == 2 and info["action_high"] == [512.0, 512.0]
    assert info["window"] == 9 and info["action_repeat"] == 3 and "reset" in info["starts"]


def test_a_session_lives_ten_steps_then_undo_reset_export_and_close(client: TestClient) -> None:
    session = start(client, real=True)
    sid, first = session["session"], session["frame"]
    assert session["step"] == 0 and first.startswith("data:image/png;base64,") and session["real_frame"]
    frames = [first]
    for i in range(10):
        reply = client.post(f"/api/sessions/{sid}/step", json={"action": [60 + 40 * i, 450 - 35 * i],
                                                                "click_to_frame_ms": 80.0})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["step"] == i + 1 and len(body["rewards"]) == i + 1 and len(body["psnr"]) == i + 1
        assert body["latency"]["transformer"] > 0 and body["latency"]["decoder"] > 0
        frames.append(body["frame"])
    assert len(set(frames)) > 5  # the pusher moves: the frames change from step to step
    assert all(10 < p < 60 for p in body["psnr"]) and body["real_frame"] != first
    assert client.get("/api/latency").json()["medians"]["click_to_frame"] == 80.0

    undone = client.post(f"/api/sessions/{sid}/undo").json()
    assert undone["step"] == 9 and undone["frame"] == frames[9]
    assert client.get(f"/api/sessions/{sid}").json()["step"] == 9
    gif = client.get(f"/api/sessions/{sid}/export.gif")
    assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif" and gif.content[:3] == b"GIF"
    mp4 = client.get(f"/api/sessions/{sid}/export.mp4")
    assert mp4.status_code == 200 and b"ftyp" in mp4.content[:32]
    reset = client.post(f"/api/sessions/{sid}/reset").json()
    assert reset["step"] == 0 and reset["frame"] == first and not reset["can_undo"]

    assert client.delete(f"/api/sessions/{sid}").status_code == 204
    gone = client.post(f"/api/sessions/{sid}/step", json={"action": [1, 2]})
    assert gone.status_code == 404 and "it never existed, was closed, or was dropped" in gone.json()["detail"]


def test_frames_follow_the_actions(client: TestClient) -> None:
    """The same start under opposite targets: the greedy model draws different futures."""
    finals = []
    for target in ([40.0, 40.0], [470.0, 470.0]):
        sid = start(client)["session"]
        for _ in range(3):
            reply = client.post(f"/api/sessions/{sid}/step", json={"action": target})
        finals.append(reply.json()["frame"])
    assert finals[0] != finals[1]


@pytest.mark.parametrize("body, status, message", [
    ({"action": [1.0, 2.0, 3.0]}, 422, "list of 2 numbers"),
    ({"action": [1.0]}, 422, "list of 2 numbers"),
    ({"action": [600.0, 10.0]}, 422, "outside the action bounds"),
    ({"action": [-1.0, 10.0]}, 422, "outside the action bounds"),
    ({"action": "left"}, 422, "malformed request: body.action"),
    ({"action": [True, False]}, 422, "malformed request: body.action.0"),  # not read as 1.0 and 0.0
    ({"action": ["100", "200"]}, 422, "malformed request: body.action.0"),
    ({"action": [1.0, 2.0], "speed": 3}, 422, "body.speed"),
    ({}, 422, "body.action: Field required"),
])
def test_bad_steps_are_refused_with_a_clear_message(client: TestClient, body: dict, status: int,
                                                    message: str) -> None:
    sid = start(client)["session"]
    reply = client.post(f"/api/sessions/{sid}/step", json=body)
    assert reply.status_code == status and message in reply.json()["detail"]
    assert client.get(f"/api/sessions/{sid}").json()["step"] == 0  # nothing happened, the session lives on


def test_nan_infinity_and_broken_json_are_refused(client: TestClient) -> None:
    sid = start(client)["session"]
    headers = {"content-type": "application/json"}
    for text in ('{"action": [NaN, 3]}', '{"action": [Infinity, 3]}'):
        reply = client.post(f"/api/sessions/{sid}/step", content=text, headers=headers)
        assert reply.status_code == 422 and "finite" in reply.json()["detail"]
    broken = client.post(f"/api/sessions/{sid}/step", content='{"action": [1, ', headers=headers)
    assert broken.status_code == 422 and "malformed request" in broken.json()["detail"]
    huge = client.post(f"/api/sessions/{sid}/step", content='{"action": [' + "1, " * 100_000 + "1]}", headers=headers)
    assert huge.status_code == 413 and "request body over 65536 bytes" in huge.json()["detail"]  # never parsed
    assert client.post(f"/api/sessions/{sid}/step", json={"action": [200, 200]}).status_code == 200
    assert client.get(f"/api/sessions/{sid}").json()["step"] == 1


def test_bad_sessions_starts_and_exports_are_refused(client: TestClient) -> None:
    for method, path in (("get", "/api/sessions/nope"), ("post", "/api/sessions/nope/undo"),
                         ("post", "/api/sessions/nope/reset"), ("delete", "/api/sessions/nope"),
                         ("get", "/api/sessions/nope/export.gif")):
        reply = getattr(client, method)(path)
        assert reply.status_code == 404 and "unknown session" in reply.json()["detail"]
    refused = client.post("/api/sessions", json={"start": "clip"})  # no data folder beside the test checkout
    assert refused.status_code == 422 and "start must be one of" in refused.json()["detail"]
    assert client.post("/api/sessions", json={"start": "dream"}).status_code == 422
    negative = client.post("/api/sessions", json={"start": "reset", "seed": -1})  # gymnasium raised: a 500
    assert negative.status_code == 422 and "seed must be >= 0" in negative.json()["detail"]
    sid = start(client)["session"]
    undo = client.post(f"/api/sessions/{sid}/undo")
    assert undo.status_code == 409 and "nothing to undo" in undo.json()["detail"]
    export = client.get(f"/api/sessions/{sid}/export.avi")
    assert export.status_code == 422 and "gif or mp4" in export.json()["detail"]


def test_a_model_without_push_t_gets_clip_starts_and_actions_of_its_own_size(slider_engine: PlayEngine) -> None:
    with TestClient(create_app(slider_engine)) as client:
        info = client.get("/api/info").json()
        assert not info["pusht"] and info["starts"] == ["clip"] and info["action_low"] == [-1.0] * 3
        session = client.post("/api/sessions", json={"start": "clip", "clip": 0}).json()
        assert session["start"]["episode"] == "episode_000001" and session["real_frame"] is None
        reply = client.post(f"/api/sessions/{session['session']}/step", json={"action": [0.5, -0.5, 0.0]})
        assert reply.status_code == 200 and reply.json()["psnr"] == [None]
        short = client.post(f"/api/sessions/{session['session']}/step", json={"action": [0.5, -0.5]})
        assert short.status_code == 422 and short.json()["detail"].startswith("action must be a list of 3 numbers, got")
        real = client.post("/api/sessions", json={"start": "clip", "real": True})
        assert real.status_code == 422 and "Push-T" in real.json()["detail"]
