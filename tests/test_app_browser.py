"""The web app driven in headless Chromium (Debian's chromium + chromium-driver, via selenium).

One app server (tiny random-weight model, 127.0.0.1 only) serves both tests: the video tab (upload the sample
clip, click two points on a later frame, track forward only and then both ways, download the tracks) and the live tab (Chromium's fake camera
playing a generated .y4m clip). APP_SCREENSHOT_DIR=media saves screenshots of both for the README.
scripts/test.sh installs the browser where it is missing.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.tiny_model import tiny_config
from trackon2.webapp.clip import load_clip

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: "
                                "pip install -r requirements-app.txt (scripts/test.sh does this)")
pytest.importorskip("gradio", reason="gradio is not installed: pip install -r requirements-app.txt")
from PIL import Image  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow  # a browser and an app server

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "media" / "sample.mp4"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1050"]
QUERY_FRAME = 6
CLICKS = [(250, 150), (120, 230)]
CLIP_FRAMES = 16
WAIT = 60

if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    MISSING = "no Chromium/chromedriver: run scripts/test.sh (apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(f"{MISSING}; CI must run the browser tests", pytrace=False)
    pytest.skip(MISSING, allow_module_level=True)


def _screenshot_dir(tmp_path: Path) -> Path:
    """Where screenshots go: $APP_SCREENSHOT_DIR (``media`` refreshes the README's), else the test's tmp dir."""
    return Path(os.environ.get("APP_SCREENSHOT_DIR", tmp_path))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """Start app.py with the tiny model on a free local port; stop it after the module."""
    folder = tmp_path_factory.mktemp("app")
    (folder / "tiny.yaml").write_text(yaml.safe_dump(vars(tiny_config())))
    port = _free_port()
    log = open(folder / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "app.py", "--config", str(folder / "tiny.yaml"), "--checkpoint", "none",
         "--support_grid_size", "2", "--device", "cpu", "--port", str(port), "--max_frames", str(CLIP_FRAMES)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"app.py did not start: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=20)
    log.close()


def _browser(profile: Path, extra_flags: list[str] = ()):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra_flags]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    return driver


def _wait(driver, condition, message: str):
    return WebDriverWait(driver, WAIT, poll_frequency=0.2).until(lambda d: condition(d), message=message)


def _find(driver, css: str, displayed: bool = True):
    """The first (displayed) element matching ``css``, once the page has rendered it."""
    return _wait(driver, lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, css)
                                         if e.is_displayed() or not displayed), None), f"nothing at {css}")


def _text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


_CLICK_OFFSET_JS = """
const [img, x, y] = arguments;
const r = img.getBoundingClientRect();
const scale = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight, 1);
const left = (r.width - img.naturalWidth * scale) / 2, top = (r.height - img.naturalHeight * scale) / 2;
return [left + x * scale - r.width / 2, top + y * scale - r.height / 2];
"""


def _click_pixel(driver, image, x: int, y: int) -> None:
    """A real mouse click on image pixel (x, y); Gradio shows images centred in their box, scaled down to fit."""
    dx, dy = driver.execute_script(_CLICK_OFFSET_JS, image, x, y)
    ActionChains(driver).move_to_element_with_offset(image, round(dx), round(dy)).click().perform()


def _loaded_image(driver, css: str):
    return _wait(driver, lambda d: next((i for i in d.find_elements(By.CSS_SELECTOR, css)
                                         if d.execute_script("return arguments[0].naturalWidth", i) > 0), None),
                 f"no image at {css}")


def _loaded_image_size(driver, css: str) -> list[int]:
    """[width, height] of the first loaded image at ``css``, read in one script call: the live view swaps its image
    for every frame, so an element found loaded may be loading the next frame by the time it is read again."""
    script = ("const img = [...document.querySelectorAll(arguments[0])].find(i => i.naturalWidth > 0);"
              "return img ? [img.naturalWidth, img.naturalHeight] : null;")
    return _wait(driver, lambda d: d.execute_script(script, css), f"no image at {css}")


def _shown_pixels(driver, css: str) -> np.ndarray | None:
    """The RGB pixels of the first loaded image at ``css``, fetched from its address (None while it is being
    replaced): the frame view is a lossless PNG, so it can be compared exactly."""
    try:
        with urllib.request.urlopen(_loaded_image(driver, css).get_attribute("src"), timeout=WAIT) as response:
            return np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))
    except (OSError, StaleElementReferenceException):
        return None


def _drawn_view(saved: dict, t: int) -> np.ndarray:
    """Frame t of the sample as the app draws it for the saved run: its queries and the tracks' two-way trails."""
    clip = load_clip(SAMPLE, CLIP_FRAMES)
    clip.queries = [(int(f), x, y) for f, x, y in saved["queries"]]
    clip.tracked = {key: np.asarray(value, dtype=np.float32 if key == "tracks" else None)
                    for key, value in saved.items()}
    return clip.frame_with_points(t)


def _download_links(driver) -> dict | None:
    """The download links by file name, once all three are listed."""
    links = {a.get_attribute("download"): a for a in driver.find_elements(By.CSS_SELECTOR, "#downloads a[download]")}
    return links if len(links) >= 3 else None


def test_video_tab_tracks_points_clicked_on_a_later_frame(app_url, tmp_path):
    (tmp_path / "notes.txt").write_text("not a video")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = _browser(tmp_path / "profile")
    try:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        driver.get(app_url)
        _find(driver, "#track_button").click()
        _wait(driver, lambda d: "upload a video" in _text(d, "status"), "no message for tracking without a video")

        upload = _find(driver, "#video_upload input[type=file]", displayed=False)
        upload.send_keys(str(tmp_path / "notes.txt"))
        _wait(driver, lambda d: "⚠️" in _text(d, "status") and "notes.txt" in _text(d, "status"),
              "no message for a non-video upload")
        _find(driver, "#video_upload button[aria-label='Clear']").click()
        _find(driver, "#video_upload input[type=file]", displayed=False).send_keys(str(SAMPLE))
        _wait(driver, lambda d: f"{CLIP_FRAMES} frames of 384x288" in _text(d, "status"), "the clip did not load")

        _find(driver, "#track_button").click()
        _wait(driver, lambda d: "no points to track" in _text(d, "status"), "no message for tracking no points")

        first_src = _loaded_image(driver, "#frame_view img").get_attribute("src")
        _find(driver, "#frame_slider input[type=range]").send_keys(*[Keys.ARROW_RIGHT] * QUERY_FRAME)
        frame_number = _find(driver, "#frame_slider input[type=number]")
        _wait(driver, lambda d: frame_number.get_attribute("value") == str(QUERY_FRAME),
              "the frame slider did not move")
        _wait(driver, lambda d: _loaded_image(d, "#frame_view img").get_attribute("src") != first_src,
              "scrubbing did not change the frame")
        for count, (x, y) in enumerate(CLICKS, start=1):
            _click_pixel(driver, _loaded_image(driver, "#frame_view img"), x, y)
            _wait(driver, lambda d: f"{count} point(s)" in _text(d, "points_text"), f"click {count} was not added")
        backward = _find(driver, "#backward_checkbox input[type=checkbox]")
        assert backward.is_selected(), "the Video tab tracks backward by default"
        backward.click()  # first forward only
        _find(driver, "#track_button").click()
        _wait(driver, lambda d: f"Tracked 2 point(s) through {CLIP_FRAMES} frames." in _text(d, "status"),
              "tracking did not end")
        links = _wait(driver, _download_links, "the three downloads did not appear")
        assert set(links) == {"tracks.npz", "tracks.json", "tracks.csv"}
        links["tracks.json"].click()
        saved = _wait(driver, lambda d: (downloads / "tracks.json").exists() and downloads / "tracks.json",
                      "tracks.json was not downloaded")
        forward_href = links["tracks.json"].get_attribute("href")
        _find(driver, "#backward_checkbox input[type=checkbox]").click()  # then both ways, the default
        _find(driver, "#track_button").click()
        _wait(driver, lambda d: "forward and backward" in _text(d, "status"), "two-way tracking did not end")
        links = _wait(driver, lambda d: (found := _download_links(d)) and found["tracks.json"].get_attribute("href")
                      != forward_href and found, "the two-way downloads did not appear")
        # Chromium asks before a page's second download, so this one is fetched from the link's address
        with urllib.request.urlopen(links["tracks.json"].get_attribute("href"), timeout=WAIT) as response:
            two_way = json.loads(response.read())
        expected_view = _drawn_view(two_way, QUERY_FRAME)
        _wait(driver, lambda d: np.array_equal(_shown_pixels(d, "#frame_view img"), expected_view),
              "the shown frame is not drawn with the two-way tracks")
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(_screenshot_dir(tmp_path) / "app_video.png"))
    finally:
        driver.quit()

    result = json.loads(saved.read_text())
    queries, tracks = np.asarray(result["queries"]), np.asarray(result["tracks"])
    assert tracks.shape == (CLIP_FRAMES, 2, 2) and np.asarray(result["confidence"]).shape == (CLIP_FRAMES, 2)
    assert np.all(queries[:, 0] == QUERY_FRAME)
    assert np.abs(queries[:, 1:] - np.asarray(CLICKS)).max() <= 1, "the app received other pixels than clicked"
    assert np.array_equal(tracks[QUERY_FRAME], queries[:, 1:])
    assert np.all(tracks[:QUERY_FRAME] == 0) and not np.any(np.asarray(result["visibility"])[:QUERY_FRAME])
    assert np.all(np.isfinite(tracks[QUERY_FRAME:]))

    both = np.asarray(two_way["tracks"])
    assert np.array_equal(np.asarray(two_way["queries"]), queries) and two_way["first_frame"] == [0, 0]
    assert np.array_equal(both[QUERY_FRAME], queries[:, 1:])
    assert np.all(both[:QUERY_FRAME] != 0) and np.all(np.isfinite(both)), "the tracks do not start at frame 0"
    assert np.allclose(both[QUERY_FRAME:], tracks[QUERY_FRAME:], atol=1e-4)  # the forward half is unchanged


def _write_y4m(path: Path, frames: int = 40, width: int = 320, height: int = 240) -> None:
    """A grey clip with a bright moving square (no saturated colour: the tracks' markers are the only colour)."""
    with path.open("wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        chroma = np.full(2 * (height // 2) * (width // 2), 128, np.uint8).tobytes()
        for t in range(frames):
            luma = np.full((height, width), 60, np.uint8)
            luma[80:160, 40 + 4 * t: 120 + 4 * t] = 220
            handle.write(b"FRAME\n" + luma.tobytes() + chroma)


_SATURATED_PIXELS_JS = """
const img = document.querySelector('#live_view img');
if (!img || !img.complete || img.naturalWidth === 0) return null;
const canvas = document.createElement('canvas');
canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
const ctx = canvas.getContext('2d');
ctx.drawImage(img, 0, 0);
const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
let count = 0;
for (let i = 0; i < data.length; i += 4) {
  const hi = Math.max(data[i], data[i + 1], data[i + 2]), lo = Math.min(data[i], data[i + 1], data[i + 2]);
  if (hi - lo > 60) count++;
}
return [count];
"""


def _saturated_pixels(driver) -> int:
    """Strongly coloured pixels in the tracked live image (the fake camera is grey; markers are coloured)."""
    return _wait(driver, lambda d: d.execute_script(_SATURATED_PIXELS_JS), "the live image did not load")[0]


def _live_points(driver) -> int:
    return int(_text(driver, "live_status").split(" point(s)")[0].split("· ")[-1])


def _click_live_until_added(driver, x: int, y: int, count: int, attempts: int = 3) -> None:
    """Click the live image until it holds ``count`` points: Gradio ignores a click that lands while the
    constantly refreshed image is being swapped (it cannot map the click to a pixel then)."""
    for _ in range(attempts):
        _click_pixel(driver, _loaded_image(driver, "#live_view img"), x, y)
        try:
            WebDriverWait(driver, 5, poll_frequency=0.2).until(lambda d: _live_points(d) >= count)
            break
        except TimeoutException:
            continue
    assert _live_points(driver) == count, f"live click {count} was not added"


def test_live_tab_tracks_the_webcam_and_adds_clicked_points(app_url, tmp_path):
    _write_y4m(tmp_path / "clip.y4m")
    driver = _browser(tmp_path / "profile", ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                             f"--use-file-for-fake-video-capture={tmp_path / 'clip.y4m'}"])
    try:
        driver.get(app_url)
        _find(driver, "#live_tab-button").click()
        _find(driver, "#live_camera div[title='grant webcam access'] button").click()
        _find(driver, "#live_camera button[aria-label='capture photo']").click()
        _wait(driver, lambda d: "frames/s" in _text(d, "live_status"), "no frame came back")
        assert _loaded_image_size(driver, "#live_view img") == [480, 360]  # enlarged to the webcam preview's size
        assert _saturated_pixels(driver) <= 10, "markers drawn before any point was added"

        for count, (x, y) in enumerate([(80, 120), (240, 60)], start=1):
            _click_live_until_added(driver, x, y, count)
        _wait(driver, lambda d: _saturated_pixels(d) > 10, "the returned frames carry no track markers")
        processed = int(_text(driver, "live_status").split("· ")[-1].split(" ")[0])
        fps = float(_text(driver, "live_status").split(": ")[1].split(" ")[0])
        assert processed >= 3 and fps > 0
        driver.save_screenshot(str(_screenshot_dir(tmp_path) / "app_live.png"))

        _find(driver, "#live_clear_button").click()
        _wait(driver, lambda d: "· 0 point(s)" in _text(d, "live_status"), "clearing did not remove the points")
    finally:
        driver.quit()


def test_live_tab_drops_frames_instead_of_queueing_them(tmp_path, monkeypatch):
    """With a model slower than the camera (0.4 s a frame, camera 10 frames/s) the page sends a frame only once the
    previous result is back: the server gets one frame at a time and nothing is left once the page is closed."""
    import torch

    from trackon2.model.trackon_predictor import Predictor
    from trackon2.webapp.live import LiveSession
    from trackon2.webapp.ui import build_app

    calls: list[float] = []
    real_process = LiveSession.process

    def slow_process(self, frame):
        calls.append(time.monotonic())
        time.sleep(0.4)
        return real_process(self, frame)

    monkeypatch.setattr(LiveSession, "process", slow_process)
    torch.manual_seed(0)
    page = build_app(Predictor(tiny_config(), support_grid_size=2), work_dir=tmp_path / "work")
    port = _free_port()
    page.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False,
                        quiet=True)
    _write_y4m(tmp_path / "clip.y4m")
    driver = _browser(tmp_path / "profile", ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                             f"--use-file-for-fake-video-capture={tmp_path / 'clip.y4m'}"])
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        _find(driver, "#live_tab-button").click()
        _find(driver, "#live_camera div[title='grant webcam access'] button").click()
        _find(driver, "#live_camera button[aria-label='capture photo']").click()
        _wait(driver, lambda d: len(calls) >= 1, "no frame reached the server")
        time.sleep(4)
        seconds = time.monotonic() - calls[0]
        fps = float(_text(driver, "live_status").split(": ")[1].split(" ")[0])
    finally:
        driver.quit()
    received = len(calls)
    time.sleep(2)
    page.close()
    # The live event may run 4 at a time: a client that kept sending would get overlapping calls.
    assert received <= seconds / 0.4 + 2, f"{received} frames in {seconds:.1f} s: frames were queued"
    assert min(np.diff(calls[:received])) >= 0.35, "a frame was sent before the previous one came back"
    assert 0 < fps < 3
    assert len(calls) - received <= 1, "frames kept arriving after the page was closed (a backlog)"
