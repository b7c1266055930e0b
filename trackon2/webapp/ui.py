"""The Gradio page: a "Video" tab (click points on any frame, track, download) and a "Live" tab (webcam).

Every handler turns a failure into a one-line message in the page's status box; per-user data lives in
``gr.State`` (one ``Clip`` and one ``LiveSession`` per browser session), so users never see each other's points.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np

from trackon2.model.errors import one_line
from trackon2.model.inputs import InputError
from trackon2.model.verifier.ensemble_tracker import EnsembleTracker
from trackon2.runtime.predictor import Predictor
from trackon2.video.clip_tracking import frames_to_track
from trackon2.video.files import VideoReadError
from trackon2.video.sample import SAMPLE_VIDEO
from trackon2.webapp.clip import MAX_GRID_SIZE, Clip, load_clip
from trackon2.webapp.live import AutocastFactory, LiveSession, session_predictor
from trackon2.webapp.page_script import HIDDEN_CLASS, OUTSIDE_BUTTONS, PAGE_SCRIPT
from trackon2.webapp.run import track_clip, track_clip_with_ensemble, write_track_files

EXPECTED_ERRORS = (InputError, VideoReadError)
LOG = logging.getLogger("trackon2.app")
VIEW_HEIGHT = 360
CACHE_CLEANUP = (300, 900)  # every 5 min, delete served files (live frames, downloads) older than 15 min


MARKDOWN_SPECIALS = "\\`*_[]<>~"  # the characters that turn a one-line message into emphasis, code or links


def problem(message: str) -> str:
    """A one-line warning for the status box (a Markdown component), its Markdown characters escaped so that file
    names such as ``my_clip_2.mp4`` show as they are."""
    escaped = "".join(f"\\{char}" if char in MARKDOWN_SPECIALS else char for char in " ".join(message.split()))
    return f"⚠️ {escaped}"


def reporting_errors(status_index: int, outputs: int) -> Callable:
    """Wrap a handler so that an exception becomes a message at output ``status_index`` (others left unchanged)."""

    def wrap(handler: Callable) -> Callable:
        @functools.wraps(handler)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            except EXPECTED_ERRORS as err:
                message = problem(str(err))
            except Exception as err:  # the page shows one line; the server log keeps the traceback
                LOG.exception("handler %s failed", handler.__name__)
                message = problem(f"internal error: {one_line(err)}")
            results = [gr.skip()] * outputs
            results[status_index] = message
            return tuple(results) if outputs > 1 else results[0]

        return run

    return wrap


def _need_clip(clip: Clip | None) -> Clip:
    if clip is None:
        raise InputError("upload a video (or use the sample clip) first")
    return clip


class App:
    """Handlers bound to one shared model; all per-user data comes in and goes out through gr.State."""

    def __init__(self, predictor: Predictor, make_autocast: AutocastFactory, max_frames: int,
                 work_dir: Path, ensemble: EnsembleTracker | None = None, live_predictor: Any = None):
        self.predictor = predictor
        self.live_predictor = predictor if live_predictor is None else live_predictor
        self.ensemble = ensemble
        self.make_autocast = make_autocast
        self.max_frames = max_frames
        self.work_dir = work_dir

    # ------------------------------------------------------------------------------------------------ video tab
    @reporting_errors(status_index=4, outputs=5)
    def open_video(self, path: str | None):
        """-> clip, frame slider, frame image, points text, status."""
        return self._open(path)

    @reporting_errors(status_index=4, outputs=6)
    def open_sample(self):
        """-> clip, frame slider, frame image, points text, status, upload box (emptied: the sample replaces it)."""
        return (*self._open(str(SAMPLE_VIDEO)), None)

    def _open(self, path: str | None):
        if path is None:
            raise InputError("no file received: choose a video file")
        clip = load_clip(path, self.max_frames)
        cut = f" (first {self.max_frames} frames; the app's --max_frames)" if clip.truncated else ""
        status = f"Loaded {clip.name}: {len(clip.frames)} frames of {clip.width}x{clip.height}{cut}."
        last = len(clip.frames) - 1
        slider = gr.update(minimum=0, maximum=max(last, 1), value=0, step=1, interactive=last > 0)  # min < max
        return clip, slider, clip.frame_with_points(0), clip.describe_points(), status

    @reporting_errors(status_index=1, outputs=2)
    def show_frame(self, clip: Clip | None, t: float):
        """-> frame image, status."""
        clip = _need_clip(clip)
        return clip.frame_with_points(int(t)), ""

    @reporting_errors(status_index=3, outputs=4)
    def click_point(self, clip: Clip | None, t: float, event: gr.SelectData):
        """-> clip, frame image, points text, status."""
        clip = _need_clip(clip)
        if not isinstance(event.index, (list, tuple)) or len(event.index) != 2:
            raise InputError("click inside the image to add a point")
        x, y = event.index
        clip.add_point(int(t), float(x), float(y))
        return clip, clip.frame_with_points(int(t)), clip.describe_points(), ""

    @reporting_errors(status_index=3, outputs=4)
    def add_grid(self, clip: Clip | None, t: float, size: float | None):
        clip = _need_clip(clip)
        if size is None:
            raise InputError(f"enter a grid size (1 to {MAX_GRID_SIZE})")
        clip.add_grid(int(t), int(size))
        return clip, clip.frame_with_points(int(t)), clip.describe_points(), ""

    @reporting_errors(status_index=3, outputs=4)
    def edit_points(self, clip: Clip | None, t: float, action: str):
        clip = _need_clip(clip)
        if action == "undo":
            clip.undo()
        else:
            clip.clear()
        return clip, clip.frame_with_points(int(t)), clip.describe_points(), ""

    @reporting_errors(status_index=2, outputs=5)
    def track(self, clip: Clip | None, backward: bool = True, t: float = 0, progress: gr.Progress = gr.Progress()):
        """-> overlay video, download files, status, clip, frame image (the shown frame with the tracks' trails)."""
        clip = _need_clip(clip)
        if not clip.queries:
            raise InputError("no points to track: click points on a frame or add a grid first")
        total = frames_to_track(len(clip.frames), clip.query_array(), backward)
        if self.ensemble is not None:
            progress(0, desc=f"tracking with {len(self.ensemble.trackers)} trackers and the verifier")
            run = track_clip_with_ensemble(clip, self.ensemble, self.work_dir / uuid.uuid4().hex,
                                           self.make_autocast())
            clip.tracked = run.result
            status = (f"Tracked {run.points} point(s) through {run.frames} frames with the verifier ensemble of "
                      f"{', '.join(self.ensemble.trackers)}.")
            return (str(run.overlay), [str(run.npz), str(run.json), str(run.csv)], status, clip,
                    clip.frame_with_points(int(t)))
        progress(0, desc="tracking", total=total, unit="frames")
        run = track_clip(clip, session_predictor(self.predictor), self.work_dir / uuid.uuid4().hex,
                         self.make_autocast(),
                         on_frame=lambda done: progress(done / total, desc=f"tracking frame {done}/{total}"),
                         backward=backward)
        clip.tracked = run.result
        both = " (forward and backward from each point's frame)" if backward else ""
        status = f"Tracked {run.points} point(s) through {run.frames} frames{both}."
        return (str(run.overlay), [str(run.npz), str(run.json), str(run.csv)], status, clip,
                clip.frame_with_points(int(t)))

    @staticmethod
    def click_beside() -> str:
        """The status line for a click in the image box but beside the picture (the page's script reports it)."""
        return problem("click on the picture itself to add a point: that click was beside it")

    # ------------------------------------------------------------------------------------------------- live tab
    @reporting_errors(status_index=1, outputs=3)
    def live_frame(self, frame: np.ndarray | None, session: LiveSession | None):
        """-> annotated frame, live status, session."""
        if frame is None:
            return gr.skip(), gr.skip(), session
        session = session or LiveSession(self.live_predictor, self.make_autocast, view_height=VIEW_HEIGHT)
        annotated = session.process(frame)
        return annotated, session.status(), session

    @reporting_errors(status_index=0, outputs=2)
    def live_click(self, session: LiveSession | None, event: gr.SelectData):
        """-> live status, session."""
        if session is None:
            raise InputError("start the camera first: points are clicked on the live image")
        if not isinstance(event.index, (list, tuple)) or len(event.index) != 2:
            raise InputError("click inside the image to add a point")
        session.add_point(*map(float, event.index))
        return session.status(), session

    @reporting_errors(status_index=0, outputs=2)
    def live_click_beside(self, session: LiveSession | None):
        """-> live status, session: the click-beside message, kept in view while frames keep coming."""
        if session is None:
            return self.click_beside(), None
        session.notify(self.click_beside())
        return session.status(), session

    @reporting_errors(status_index=0, outputs=2)
    def live_download(self, session: LiveSession | None):
        """-> live status, download files: what the live session has tracked so far (as the demo saves it)."""
        if session is None or not session.tracks.frames:
            raise InputError("nothing tracked yet: start the camera first")
        result = session.tracks.as_arrays()
        files = write_track_files(self.work_dir / uuid.uuid4().hex, result)
        return session.status(), [str(path) for path in files]

    @reporting_errors(status_index=0, outputs=2)
    def live_clear(self, session: LiveSession | None):
        if session is None:
            return "No points.", None
        session.clear()
        return session.status(), session


def build_app(predictor: Predictor, make_autocast: AutocastFactory = contextlib.nullcontext,
              max_frames: int = 300, work_dir: Path | None = None,
              ensemble: EnsembleTracker | None = None, live_predictor: Any = None) -> gr.Blocks:
    """The whole page; ``predictor``'s weights are shared by every session, its stream state by none.

    With ``ensemble`` the Video tab tracks with the verifier ensemble (offline, the whole clip at once); the Live
    tab keeps ``predictor``, or ``live_predictor`` where given (anything with the Predictor's streaming methods,
    e.g. an exported graph's ``export.torch_facade.OnnxPredictor``).

    ``make_autocast()`` gives a fresh autocast context for each run (sessions run concurrently).
    """
    app = App(predictor, make_autocast, max_frames,
              work_dir or Path(tempfile.mkdtemp(prefix="trackon2-app-")), ensemble, live_predictor)
    with gr.Blocks(title="Track-On2", delete_cache=CACHE_CLEANUP) as page:
        gr.Markdown("# Track-On2 point tracking\nClick points on any frame of a video and track them, "
                    "or track your webcam live.")
        with gr.Tab("Video"):
            clip_state = gr.State(None)
            with gr.Row():
                with gr.Column():
                    with gr.Row(equal_height=True):
                        upload = gr.File(label="Video file", file_count="single", height=100, scale=3,
                                         elem_id="video_upload")
                        sample = gr.Button("Use the sample clip", size="sm", scale=1, elem_id="sample_button")
                    frame_slider = gr.Slider(0, 1, value=0, step=1, label="Frame", interactive=False,
                                             elem_id="frame_slider")
                    frame_view = gr.Image(label="Click to add a point on this frame", interactive=False, type="numpy",
                                          format="png", height=VIEW_HEIGHT, elem_id="frame_view")
                    with gr.Row(equal_height=True):
                        undo = gr.Button("Undo", size="sm", elem_id="undo_button")
                        clear = gr.Button("Clear points", size="sm", elem_id="clear_button")
                        grid_size = gr.Number(8, label="Grid size", precision=0, min_width=80, elem_id="grid_size")
                        grid = gr.Button("Add grid on this frame", size="sm", elem_id="grid_button")
                    points_text = gr.Markdown("No video yet.", elem_id="points_text")
                    frame_beside = gr.Button("beside", elem_id=OUTSIDE_BUTTONS["frame_view"],
                                             elem_classes=[HIDDEN_CLASS])
                with gr.Column():
                    track = gr.Button("Track", variant="primary", elem_id="track_button")
                    backward = gr.Checkbox(True, label="Also track backward (to frame 0 from each point's frame)",
                                           elem_id="backward_checkbox")
                    status = gr.Markdown("", elem_id="status")
                    overlay = gr.Video(label="Overlay (colour = first position; ring = occluded)", interactive=False,
                                       height=VIEW_HEIGHT, elem_id="overlay_video")
                    downloads = gr.File(label="Tracks (NPZ, JSON, CSV)", file_count="multiple", interactive=False,
                                        height=140, elem_id="downloads")

            loaded = [clip_state, frame_slider, frame_view, points_text, status]
            upload.upload(app.open_video, upload, loaded)
            sample.click(app.open_sample, None, [*loaded, upload])
            frame_beside.click(app.click_beside, None, status)
            frame_slider.change(app.show_frame, [clip_state, frame_slider], [frame_view, status])
            edited = [clip_state, frame_view, points_text, status]
            frame_view.select(app.click_point, [clip_state, frame_slider], edited)
            undo.click(lambda c, t: app.edit_points(c, t, "undo"), [clip_state, frame_slider], edited)
            clear.click(lambda c, t: app.edit_points(c, t, "clear"), [clip_state, frame_slider], edited)
            grid.click(app.add_grid, [clip_state, frame_slider, grid_size], edited)
            track.click(app.track, [clip_state, backward, frame_slider],
                        [overlay, downloads, status, clip_state, frame_view], concurrency_limit=2)

        with gr.Tab("Live", elem_id="live_tab"):
            live_state = gr.State(None)
            gr.Markdown("Start the webcam; click the tracked image to add a point there. Frames that arrive while "
                        "the model is busy are skipped, never queued.")
            with gr.Row():
                camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam",
                                  webcam_options=gr.WebcamOptions(mirror=False), height=VIEW_HEIGHT,
                                  elem_id="live_camera")
                tracked = gr.Image(label="Tracked (click to add a point)", interactive=False, type="numpy",
                                   format="jpeg", height=VIEW_HEIGHT, elem_id="live_view")
            with gr.Row():
                live_clear = gr.Button("Clear points", elem_id="live_clear_button")
                live_save = gr.Button("Download tracks so far", elem_id="live_download_button")
            live_status = gr.Markdown("Not started.", elem_id="live_status")
            live_files = gr.File(label="Live tracks (NPZ, JSON, CSV)", file_count="multiple", interactive=False,
                                 height=100, elem_id="live_downloads")
            live_beside = gr.Button("beside", elem_id=OUTSIDE_BUTTONS["live_view"], elem_classes=[HIDDEN_CLASS])
            camera.stream(app.live_frame, [camera, live_state], [tracked, live_status, live_state],
                          stream_every=0.04, concurrency_limit=4, concurrency_id="live", show_progress="hidden")
            tracked.select(app.live_click, live_state, [live_status, live_state])
            live_clear.click(app.live_clear, live_state, [live_status, live_state])
            live_save.click(app.live_download, live_state, [live_status, live_files])
            live_beside.click(app.live_click_beside, live_state, [live_status, live_state])
        page.load(None, None, None, js=PAGE_SCRIPT)
    return page
