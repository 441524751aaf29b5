"""``ipmcam studio`` in process: the JSON API, the MJPEG stream and the guard, over real HTTP.

A still clip is the camera (through the same ``CameraSource`` a webcam
uses), the classic engine makes up the face, and uvicorn serves on a free
port; httpx is the client. Last, the command itself in a child process:
its URL line, and a clean stop on SIGTERM.
"""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image

from ipmcam.resources import DEMO_REFERENCE
from ipmcam.studio.app import BOUNDARY, MAX_UPLOAD
from ipmcam.studio.bench import iter_parts
from ipmcam.studio.cli import Studio
from tests.studio_support import running_studio, still_clip, wait_for

STATE_KEYS = {"fps", "latency_ms", "engine", "backend", "precision", "intensity", "strengths", "reference",
              "faces", "enabled", "mirror", "split"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return still_clip(tmp_path_factory.mktemp("studio") / "still.avi")


@pytest.fixture(scope="module")
def studio(clip: Path) -> Iterator[Studio]:
    with running_studio(clip, "--preset", "natural") as running:
        yield running


@pytest.fixture()
def client(studio: Studio) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{studio.port}", timeout=60) as http:
        yield http


def read_parts(client: httpx.Client, count: int) -> list[tuple[int, bytes]]:
    """The first ``count`` parts of /stream.mjpg: (frame number, JPEG bytes)."""
    parts: list[tuple[int, bytes]] = []
    with client.stream("GET", "/stream.mjpg") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        for headers, payload in iter_parts(response.iter_bytes()):
            assert headers["Content-Type"] == "image/jpeg"
            parts.append((int(headers["X-Frame"]), payload))
            if len(parts) == count:
                return parts
    raise AssertionError("the stream ended early")


def test_state_says_what_runs(client: httpx.Client, studio: Studio) -> None:
    state = client.get("/api/state").json()
    assert STATE_KEYS <= set(state)
    assert (state["engine"], state["backend"], state["reference"]) == ("classic", "none", "preset natural")
    assert state["strengths"] == {"lips": 1.0, "eyes": 1.0, "skin": 1.0}
    wait_for(lambda: client.get("/api/state").json()["faces"] == 1, what="the face to be found")
    wait_for(lambda: client.get("/api/state").json()["latency_ms"] is not None, what="a latency")


def test_settings_apply_between_frames(client: httpx.Client, studio: Studio) -> None:
    response = client.post("/api/settings", json={"intensity": 0.4, "strengths": {"eyes": 0.5}, "mirror": True})
    assert response.status_code == 200
    assert response.json()["intensity"] == 0.4
    assert response.json()["strengths"] == {"lips": 1.0, "eyes": 0.5, "skin": 1.0}
    opts = studio.live.pipeline.options
    wait_for(lambda: opts.intensity == 0.4 and opts.mirror, what="the settings to reach the pipeline")
    assert opts.strengths == {"lips": 1.0, "eyes": 0.5, "skin": 1.0}
    client.post("/api/settings", json={"intensity": 1.0, "strengths": {"eyes": 1.0}, "mirror": False})
    wait_for(lambda: opts.intensity == 1.0 and not opts.mirror, what="the settings to be undone")


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"intensity": 2}, 400, "intensity must be a number from 0 to 1"),
    ({"intensity": True}, 400, "intensity must be a number"),
    ({"strengths": {"nose": 1}}, 400, "strengths must be an object with keys from lips, eyes, skin"),
    ({"volume": 3}, 400, "unknown settings ['volume']"),
    ({"split": "yes"}, 400, "split must be true or false"),
    ([1, 2], 400, "settings must be a JSON object"),
])
def test_bad_settings_are_4xx_and_the_stream_goes_on(client: httpx.Client, studio: Studio, body: object,
                                                     status: int, words: str) -> None:
    frames = studio.hub.frames
    response = client.post("/api/settings", json=body)
    assert response.status_code == status
    assert words in response.json()["error"]
    assert studio.live.pipeline.options.intensity == 1.0
    wait_for(lambda: studio.hub.frames > frames + 2, what="more frames after a bad request")


def test_settings_must_be_json(client: httpx.Client) -> None:
    assert client.post("/api/settings", content=b"{bad", headers={"content-type": "application/json"}).json() \
        == {"error": "the body is not valid JSON"}
    response = client.post("/api/settings", data={"intensity": "1"})  # what a cross-site form would send
    assert response.status_code == 415


def test_presets_gallery_and_choice(client: httpx.Client, studio: Studio) -> None:
    names = [p["name"] for p in client.get("/api/presets").json()]
    assert {"natural", "evening", "smoky-eye"} <= set(names)
    thumbnail = client.get("/api/presets/evening.jpg")
    assert thumbnail.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumbnail.content)).size == (160, 160)
    response = client.post("/api/preset/evening")
    assert response.status_code == 200 and response.json()["reference"] == "preset evening"
    missing = client.post("/api/preset/glitter")
    assert missing.status_code == 404 and "unknown preset 'glitter'" in missing.json()["error"]
    assert client.get("/api/presets/glitter.jpg").status_code == 404
    client.post("/api/preset/natural")


def png_bytes(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def test_reference_upload(client: httpx.Client, studio: Studio) -> None:
    photo = DEMO_REFERENCE.read_bytes()
    style = studio.live.pipeline.style
    response = client.post("/api/reference", files={"file": ("..\\..\\etc/her look.jpg", photo, "image/jpeg")})
    assert response.status_code == 200, response.text
    assert response.json()["reference"] == "her look.jpg"  # a label only: no path from the client is used
    wait_for(lambda: studio.live.pipeline.style is not style, what="the new look to be swapped in")
    client.post("/api/preset/natural")


@pytest.mark.parametrize(("name", "content", "status", "words"), [
    ("notes.txt", b"not a photo at all", 415, "not an image"),
    ("grey.png", png_bytes(np.full((120, 120, 3), 128, np.uint8)), 422, "grey.png: no face found"),
    ("anim.gif", None, 415, "GIF images are not taken"),
])
def test_unusable_uploads_are_4xx(client: httpx.Client, studio: Studio, name: str, content: bytes | None,
                                  status: int, words: str) -> None:
    if content is None:
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, "GIF")
        content = buffer.getvalue()
    before = client.get("/api/state").json()["reference"]
    response = client.post("/api/reference", files={"file": (name, content)})
    assert response.status_code == status
    assert words in response.json()["error"]
    assert client.get("/api/state").json()["reference"] == before


def test_upload_limits(client: httpx.Client) -> None:
    too_big = client.post("/api/reference", files={"file": ("big.jpg", b"\xff" * (MAX_UPLOAD + 100_000))})
    assert too_big.status_code == 413 and "over 20 MB" in too_big.json()["error"]
    no_file = client.post("/api/reference", data={"photo": "x"}, files={"other": ("a.jpg", b"x")})
    assert no_file.status_code == 400 and "field 'file'" in no_file.json()["error"]


def test_stream_sends_each_frame_once_encoded(client: httpx.Client, studio: Studio) -> None:
    parts = read_parts(client, 3)
    numbers = [n for n, _ in parts]
    assert numbers == sorted(set(numbers))
    image = cv2.imdecode(np.frombuffer(parts[-1][1], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (512, 512, 3)
    wait_for(lambda: studio.hub.viewers == 0, what="the viewer to be gone")
    encoded, frames = studio.hub.encoded, studio.hub.frames
    wait_for(lambda: studio.hub.frames > frames + 5, what="frames nobody watches")
    assert studio.hub.encoded == encoded  # nobody watches: nothing is encoded


def test_two_viewers_share_one_encoding(client: httpx.Client, studio: Studio) -> None:
    with httpx.Client(base_url=client.base_url, timeout=60) as other:
        with client.stream("GET", "/stream.mjpg"), other.stream("GET", "/stream.mjpg"):
            wait_for(lambda: studio.hub.viewers == 2, what="two viewers")
            encoded, frames = studio.hub.encoded, studio.hub.frames
            wait_for(lambda: studio.hub.frames > frames + 10, what="frames")
            assert studio.hub.encoded - encoded <= studio.hub.frames - frames + 1


def test_snapshot_is_the_newest_frame(client: httpx.Client) -> None:
    response = client.get("/snapshot.png")
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"].startswith('attachment; filename="ipmcam-')
    assert cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR).shape == (512, 512, 3)


def test_pages_and_static_files(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'id="preview"' in page.text
    assert 'src="/stream.mjpg"' in client.get("/overlay").text
    assert client.get("/static/studio.js").status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_other_sites_are_refused(client: httpx.Client) -> None:
    assert client.get("/api/state", headers={"host": "attacker.example"}).status_code == 403
    cross = client.post("/api/preset/evening", headers={"origin": "http://attacker.example"})
    assert cross.status_code == 403 and cross.json()["error"] == "requests from other sites are refused"
    state = client.get("/api/state", headers={"origin": "http://attacker.example"})
    assert not any(h.startswith("access-control-") for h in state.headers)  # no CORS


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ipmcam", "studio", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_other_hosts_need_a_token() -> None:
    result = run_cli("--host", "0.0.0.0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "ipmcam: error: --host 0.0.0.0 lets other machines reach the studio: give a --token too "
        "(they then open the printed URL, which carries it)"]


def test_port_in_use_is_one_line(studio: Studio) -> None:
    result = run_cli("--port", str(studio.port))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ipmcam: error: cannot listen on 127.0.0.1:{studio.port}:")


def test_command_serves_then_stops_on_sigterm(clip: Path) -> None:
    child = subprocess.Popen([sys.executable, "-m", "ipmcam", "studio", "--camera", str(clip), "--port", "0",
                              "--engine", "classic", "--preset", "office"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = child.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("ipmcam studio: http://127.0.0.1:"), line
        url = line.split(": ", 1)[1].strip()
        with httpx.Client(base_url=url, timeout=60) as http:
            wait_for(lambda: http.get("/api/state").json()["frames"] > 2, what="frames from the command")
            assert http.get("/api/state").json()["reference"] == "preset office"
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 128 + signal.SIGTERM, err
    assert "frames," in out and "Traceback" not in err
