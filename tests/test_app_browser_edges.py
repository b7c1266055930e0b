"""The web app's rough edges, in headless Chromium (see tests/test_app_browser.py for the set-up): one clean line for
a file that is not a video or is a single image, grid sizes 0 and empty in the status line (no toast), a click
beside the picture answered in both tabs, the sample clip emptying the upload box, the grid button above the fold,
the live view drawn at the webcam preview's size, its start button's label, and a download of the live tracks."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from tests.test_app_browser import (  # noqa: F401 (app_url is a fixture the tests take by name)
    _browser,
    _click_live_until_added,
    _find,
    _loaded_image,
    _loaded_image_size,
    _text,
    _wait,
    _write_y4m,
    app_url,
)

pytestmark = pytest.mark.slow

BESIDE = "click on the picture itself to add a point"


def _status_line(driver, element_id: str = "status") -> str:
    text = _text(driver, element_id).strip()
    assert "\n" not in text, text
    return text


def _upload(driver, path) -> None:
    clear = [b for b in driver.find_elements(By.CSS_SELECTOR, "#video_upload button[aria-label='Clear']")
             if b.is_displayed()]
    if clear:
        clear[0].click()
    _find(driver, "#video_upload input[type=file]", displayed=False).send_keys(str(path))


_PICTURE_AND_BOX_JS = """
const i = arguments[0], r = i.getBoundingClientRect(), b = i.closest('button').getBoundingClientRect();
const s = Math.min(r.width / i.naturalWidth, r.height / i.naturalHeight, 1);
return [r.left + (r.width - i.naturalWidth * s) / 2, b.left, b.top + b.height / 2];
"""


def _click_beside(driver, css: str) -> None:
    """A click in the image's box 4 px from its left edge, beside a picture narrower than the box."""
    image = _loaded_image(driver, css)
    picture_left, box_left, box_middle = driver.execute_script(_PICTURE_AND_BOX_JS, image)
    assert picture_left > box_left + 16, "the picture fills its box: nothing to click beside"
    body = driver.find_element(By.TAG_NAME, "body")
    origin = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left + r.width / 2,"
                                   " r.top + r.height / 2];", body)
    ActionChains(driver).move_to_element_with_offset(body, round(box_left + 4 - origin[0]),
                                                     round(box_middle - origin[1])).click().perform()


def _set_grid_size(driver, value: str) -> None:
    field = _find(driver, "#grid_size input")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.BACKSPACE)
    if value:
        field.send_keys(value)
    field.send_keys(Keys.TAB)


def test_video_tab_edges(app_url, tmp_path):
    (tmp_path / "notes_v2.txt").write_text("not a video")
    Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(tmp_path / "still.png")
    driver = _browser(tmp_path / "profile")
    try:
        driver.get(app_url)
        grid = _find(driver, "#grid_button")
        bottom, height = driver.execute_script("return [arguments[0].getBoundingClientRect().bottom, "
                                               "window.innerHeight]", grid)
        assert bottom <= height, f"'Add grid on this frame' at {bottom} px, below the {height} px window"

        _upload(driver, tmp_path / "notes_v2.txt")
        _wait(driver, lambda d: "⚠️" in _text(d, "status"), "no message for a non-video upload")
        assert _status_line(driver) == ("⚠️ notes_v2.txt is not a video that can be read: upload a video file (MP4, "
                                        "WebM, MOV, AVI, ...)")
        _upload(driver, tmp_path / "still.png")
        _wait(driver, lambda d: "still.png" in _text(d, "status"), "no message for an image")
        assert _status_line(driver) == "⚠️ still.png is a single image, not a video: upload a video file"

        _find(driver, "#sample_button").click()
        _wait(driver, lambda d: "Loaded sample.mp4" in _text(d, "status"), "the sample did not load")
        _wait(driver, lambda d: "still.png" not in _text(d, "video_upload"), "the upload box still shows the image")

        for value, message in (("0", "grid size must be between 1 and 32, got 0"), ("", "enter a grid size")):
            _set_grid_size(driver, value)
            _find(driver, "#grid_button").click()
            _wait(driver, lambda d: message in _text(d, "status"), f"no status line for grid size {value!r}")
            assert not [t for t in driver.find_elements(By.CSS_SELECTOR, ".toast-body") if t.is_displayed()]
        assert _text(driver, "points_text").startswith("No points yet")

        _click_beside(driver, "#frame_view img")
        _wait(driver, lambda d: BESIDE in _text(d, "status"), "no message for a click beside the picture")
        assert _text(driver, "points_text").startswith("No points yet")
    finally:
        driver.quit()


def test_live_tab_edges(app_url, tmp_path):
    _write_y4m(tmp_path / "clip.y4m")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = _browser(tmp_path / "profile", ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                             f"--use-file-for-fake-video-capture={tmp_path / 'clip.y4m'}"])
    try:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        driver.get(app_url)
        _find(driver, "#live_tab-button").click()
        _find(driver, "#live_camera div[title='grant webcam access'] button").click()
        start = _find(driver, "#live_camera button[aria-label='capture photo']")
        _wait(driver, lambda d: start.text.strip() == "Start tracking", f"start button reads {start.text!r}")
        start.click()
        _wait(driver, lambda d: "frames/s" in _text(d, "live_status"), "no frame came back")
        assert _loaded_image_size(driver, "#live_view img") == [480, 360]
        preview = driver.execute_script(
            "const v = document.querySelector('#live_camera video'), r = v.getBoundingClientRect();"
            "const s = Math.min(r.width / v.videoWidth, r.height / v.videoHeight); return [v.videoWidth * s,"
            " v.videoHeight * s];")
        shown = driver.execute_script(
            "const i = [...document.querySelectorAll('#live_view img')].find(i => i.naturalWidth > 0),"
            " r = i.getBoundingClientRect(), s = Math.min(r.width / i.naturalWidth, r.height / i.naturalHeight, 1);"
            "return [i.naturalWidth * s, i.naturalHeight * s];")
        assert np.allclose(shown, preview, atol=2), (shown, preview)  # the tracked picture as large as the preview

        _click_live_until_added(driver, 240, 180, 1)
        _click_beside(driver, "#live_view img")
        _wait(driver, lambda d: BESIDE in _text(d, "live_status"), "no message for a click beside the live picture")
        time.sleep(1)  # a few frames with the point
        _find(driver, "#live_download_button").click()
        links = _wait(driver, lambda d: (lambda found: found if len(found) >= 3 else None)(
            {a.get_attribute("download"): a for a in d.find_elements(By.CSS_SELECTOR, "#live_downloads a[download]")}),
            "the live downloads did not appear")
        assert set(links) == {"tracks.npz", "tracks.json", "tracks.csv"}
        links["tracks.json"].click()
        saved = _wait(driver, lambda d: (downloads / "tracks.json").exists() and downloads / "tracks.json",
                      "tracks.json was not downloaded")
    finally:
        driver.quit()
    result = json.loads(saved.read_text())
    queries, tracks = np.asarray(result["queries"]), np.asarray(result["tracks"])
    assert queries.shape == (1, 3) and np.abs(queries[0, 1:] - [160, 120]).max() <= 1  # camera pixels: 240/1.5
    start = int(queries[0, 0])
    assert tracks.shape[1] == 1 and tracks.shape[0] > start and np.all(tracks[:start] == 0)
    assert np.asarray(result["visibility"]).shape == tracks.shape[:2] == np.asarray(result["confidence"]).shape
