"""Track points through a video with Track-On2 and save the tracks and an overlay video.

    python demo.py --video media/sample.mp4                         # released DINOv3 model, 16x16 grid
    python demo.py --video clip.mp4 --checkpoint track-on-r --queries_json points.json   # any registry variant
    python demo.py --video clip.mp4 --config config/test_dinov2.yaml --checkpoint my_run/best_aj.pt
    python demo.py --video 0 --show                                 # live: camera 0 (or an rtsp/http URL)
    python demo.py --video media/sample.mp4 --realtime              # a file played as if it were live
    python demo.py --video clip.mp4 --queries_json points.json --backward   # also track back to frame 0
    python demo.py --video clip.mp4 --ensemble trackon2-dinov2,track-on-r --verifier verifier   # verifier ensemble
    python demo.py --video media/sample.mp4 --backend onnx --onnx_dir exported/tiny   # an exported graph (ONNX Runtime)

Frames are streamed through the tracker one at a time (online: no frame sees the future), so memory does not
grow with the video's length. Results: <output_dir>/tracks.npz and tracks.json (trajectories in video pixels,
visibility) and overlay.mp4. If the video turns out to be corrupt part-way, the frames tracked so far are saved.
On its query frame a track is the query point itself (visible). With --backward (video files only) each query is
also tracked from its frame back to frame 0, over the time-reversed clip: the decoded frames are then kept in
memory, and the results also hold confidence. With --ensemble, every listed tracker tracks the whole video (up to
--max_frames) and the verifier picks, per point and frame, the best of their tracks (visibility by majority vote);
tracks.npz then also holds the candidate trackers' names and tracks and the verifier's choice. Live sources always
track the newest frame (frames that arrive while the model is busy are dropped); Ctrl-C stops and saves everything
tracked so far, with each tracked frame's index in the source (source_frame) and confidence.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from trackon2.evaluation.device import parse_device
from trackon2.export.backends import BackendError
from trackon2.export.runtime import ExportFormatError
from trackon2.export.torch_facade import OnnxPredictor
from trackon2.model.checkpoint import CheckpointError
from trackon2.model.inputs import InputError
from trackon2.model.verifier.ensemble_tracker import EnsembleTracker
from trackon2.model.vit import BackboneUnavailableError
from trackon2.model.yaml_schema import ConfigError
from trackon2.runtime.predictor import SUPPORT_GRID_SIZE, Predictor, get_points_on_a_grid
from trackon2.utils.ensemble_options import add_ensemble_arguments, build_ensemble_tracker, check_ensemble_arguments
from trackon2.utils.model_options import CHECKPOINT_HELP, DEFAULT_CONFIG, autocast_for, build_predictor
from trackon2.video.clip_tracking import frames_to_track, track_frames
from trackon2.video.drawing import draw_frame, point_colours
from trackon2.video.files import VideoReadError, iter_video_frames, video_fps, video_frame_count, write_video
from trackon2.video.live_source import LiveSource, is_live_source
from trackon2.video.live_tracking import track_live
from trackon2.video.sample import SAMPLE_VIDEO


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser("Track-On2 demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", default=str(SAMPLE_VIDEO),
                        help="input video (any format ffmpeg reads; default: the sample clip shipped with the "
                             "package), a camera index (0) or an rtsp/http stream URL")
    parser.add_argument("--realtime", action="store_true",
                        help="play a video file (or the URL of one) at its frame rate as if it were a live camera "
                             "(frames are dropped when tracking is slower)")
    parser.add_argument("--show", action="store_true", help="live sources: show the overlay in a window")
    parser.add_argument("--config", default=None,
                        help=f"model config (YAML) (default: the named variant's configuration, else {DEFAULT_CONFIG})")
    parser.add_argument("--checkpoint", default=None,
                        help=f"{CHECKPOINT_HELP}, or 'none' for random weights (needs a config with backbone_config) "
                             "(default: the released weights matching the config's vit_backbone)")
    parser.add_argument("--grid_size", type=int, default=16, help="track a grid_size^2 grid from frame 0")
    parser.add_argument("--queries_json", default=None,
                        help="JSON list of [t, x, y] query points (video pixels) instead of the grid")
    parser.add_argument("--support_grid_size", type=int, default=SUPPORT_GRID_SIZE)
    parser.add_argument("--max_frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--no_video", action="store_true", help="do not write the overlay video")
    parser.add_argument("--backward", action="store_true",
                        help="also track each query backward from its frame to frame 0 (video files only; the "
                             "decoded frames are kept in memory)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                        help="torch: the PyTorch Predictor; onnx: the graph exported by python -m export.onnx, run "
                             "by ONNX Runtime (--onnx_dir; --config / --checkpoint are then not used)")
    parser.add_argument("--onnx_dir", default=None, help="--backend onnx: the folder python -m export.onnx wrote")
    add_ensemble_arguments(parser)
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    return args


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject unusable values before any model is built (``parser.error`` exits with one line)."""
    if args.grid_size < 1:
        parser.error(f"--grid_size must be at least 1, got {args.grid_size}")
    if args.support_grid_size < 0:
        parser.error(f"--support_grid_size must be 0 (no support points) or more, got {args.support_grid_size}")
    if args.max_frames is not None and args.max_frames < 1:
        parser.error(f"--max_frames must be at least 1, got {args.max_frames}")
    problem = check_ensemble_arguments(args)
    if problem:
        parser.error(problem)
    if args.ensemble is not None and is_live_source(args.video, args.realtime):
        parser.error("--ensemble needs the whole video (the verifier looks at all frames): not for live sources")
    if args.backward and is_live_source(args.video, args.realtime):
        parser.error("--backward needs a video file: live sources (cameras, streams, --realtime) are tracked "
                     "forward only")
    if args.backward and args.ensemble is not None:
        parser.error("--backward and --ensemble cannot be combined")
    if args.backend == "onnx" and args.onnx_dir is None:
        parser.error("--backend onnx needs --onnx_dir, the folder written by python -m export.onnx")
    if args.backend == "onnx" and (args.backward or args.ensemble is not None):
        parser.error("--backend onnx tracks forward, one frame at a time: not with --backward or --ensemble")
    try:
        args.device = str(parse_device(args.device))
    except ValueError as err:
        parser.error(f"--device: {err}")
    for folder in (Path(args.output_dir), *Path(args.output_dir).parents):
        if folder.exists():
            if not folder.is_dir():
                parser.error(f"--output_dir {args.output_dir}: {folder} is a file, not a folder")
            break


def load_queries(path: str | None, grid_size: int, height: int, width: int) -> np.ndarray:
    """(N, 3) queries (t, x, y): from a JSON file, or a grid on the first frame."""
    if path is None:
        grid = get_points_on_a_grid(grid_size, (height, width))[0].numpy()
        return np.concatenate([np.zeros((len(grid), 1), np.float32), grid], axis=1)
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"could not read queries from {path}: {err}") from err
    shape_error = InputError(f"{path} must hold a non-empty JSON list of [t, x, y] triples (t: start frame, x, y: "
                             f"pixels), got {json.dumps(values)[:80]}")
    if not isinstance(values, list) or not values:
        raise shape_error
    try:
        queries = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        raise shape_error from None
    if queries.ndim != 2 or queries.shape[1] != 3:
        raise shape_error
    if not np.isfinite(queries).all():
        raise InputError(f"{path}: queries contain NaN or infinite values")
    times = queries[:, 0]
    bad = (times < 0) | (times != np.round(times))
    if bad.any():
        raise InputError(f"{path}: start frames must be non-negative integers, got {times[bad][:5].tolist()}")
    return queries


def check_query_frames(queries: np.ndarray, num_frames: int, source: str) -> None:
    """Every query must start on a frame that was tracked (else its track would be all zeros)."""
    late = queries[:, 0] >= num_frames
    if late.any():
        raise InputError(f"{int(late.sum())} query point(s) start at frame(s) {sorted(set(queries[late, 0].astype(int).tolist()))[:5]}, "
                         f"after the last tracked frame of {source} ({num_frames} frame(s), frames 0..{num_frames - 1})")


def track(args: argparse.Namespace, predictor: Predictor, output_dir: Path) -> dict[str, np.ndarray]:
    """Stream the video through the predictor; returns tracks (T, N, 2) and visibility (T, N) in query order."""
    frames = iter_video_frames(args.video)
    first = next(frames)
    height, width = first.shape[:2]
    queries = load_queries(args.queries_json, args.grid_size, height, width)
    if args.max_frames is not None:
        check_query_frames(queries, args.max_frames, f"--max_frames {args.max_frames}")
    order = np.argsort(queries[:, 0], kind="stable")
    colours = point_colours(len(queries))
    fps = video_fps(args.video)
    overlay = [] if not args.no_video else None
    recent: deque = deque(maxlen=8)
    tracks, visibility = [], []
    predictor.reset()
    device = torch.device(args.device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.amp and device.type == "cuda")

    def all_frames():
        yield first
        yield from frames

    total = video_frame_count(args.video)
    if args.max_frames is not None:
        total = args.max_frames if total is None else min(total, args.max_frames)
    bar = tqdm(all_frames(), desc="tracking", unit="frame", total=total)
    try:
        for t, frame in enumerate(bar):
            if args.max_frames is not None and t >= args.max_frames:
                break
            starting = order[queries[order, 0] == t]
            new = torch.from_numpy(queries[starting, 1:]) if len(starting) else None
            with autocast:
                points, visible = predictor.forward_frame(torch.from_numpy(frame).permute(2, 0, 1), new)
            step_tracks = np.zeros((len(queries), 2), np.float32)
            step_visible = np.zeros(len(queries), bool)
            started = order[: points.shape[0]]
            step_tracks[started] = points.float().cpu().numpy()
            step_visible[started] = visible.cpu().numpy()
            tracks.append(step_tracks)
            visibility.append(step_visible)
            if overlay is not None:
                recent.append((step_tracks, step_visible))
                overlay.append(draw_frame(frame, np.stack([r[0] for r in recent]), np.stack([r[1] for r in recent]),
                                          colours))
    except VideoReadError as err:
        print(f"warning: {err}; saving the {len(tracks)} frame(s) tracked so far", file=sys.stderr)
    finally:
        if bar.total != bar.n:  # the container's count was an estimate, or the video ended early
            bar.total = bar.n
            bar.refresh()
        bar.close()
    if not tracks:
        raise InputError(f"{args.video}: no frame could be tracked (check --max_frames)")
    result = {"queries": queries, "tracks": np.stack(tracks), "visibility": np.stack(visibility)}
    if overlay is not None:
        write_video(output_dir / "overlay.mp4", overlay, fps=fps)
    save_results(result, output_dir)
    try:
        check_query_frames(queries, len(tracks), args.video)
    except InputError as err:
        raise InputError(f"{err}; the tracks of the other queries are saved in {output_dir}/") from None
    return result


def track_both_ways(args: argparse.Namespace, predictor: Predictor, output_dir: Path) -> dict[str, np.ndarray]:
    """Decode the video (up to --max_frames), then track every query forward and backward to frame 0."""
    frames = []
    try:
        for frame in iter_video_frames(args.video):
            if args.max_frames is not None and len(frames) >= args.max_frames:
                break
            frames.append(frame)
    except VideoReadError as err:
        print(f"warning: {err}; tracking the {len(frames)} frame(s) decoded so far", file=sys.stderr)
    if not frames:
        raise InputError(f"{args.video}: no frame could be decoded")
    height, width = frames[0].shape[:2]
    queries = load_queries(args.queries_json, args.grid_size, height, width)
    check_query_frames(queries, len(frames), args.video if args.max_frames is None else
                       f"--max_frames {args.max_frames}")
    with tqdm(total=frames_to_track(len(frames), queries, True), desc="tracking both ways", unit="frame") as bar:
        result = track_frames(frames, queries, predictor, backward=True, autocast=autocast_for(args),
                              on_frame=lambda done: bar.update(done - bar.n))
    if not args.no_video:
        colours = point_colours(len(queries))
        trail = 8
        overlay = [draw_frame(frame, result["tracks"][max(t - trail + 1, 0): t + 1],
                              result["visibility"][max(t - trail + 1, 0): t + 1], colours)
                   for t, frame in enumerate(frames)]
        write_video(output_dir / "overlay.mp4", overlay, fps=video_fps(args.video))
    save_results(result, output_dir)
    return result


def track_live_source(args: argparse.Namespace, predictor: Predictor, output_dir: Path) -> dict[str, np.ndarray]:
    """Track a camera, stream or ``--realtime`` file live; writes the overlay at the achieved frame rate."""
    with LiveSource(args.video, realtime=args.realtime) as source:
        recording = track_live(source, predictor,
                               lambda height, width: load_queries(args.queries_json, args.grid_size, height, width),
                               max_frames=args.max_frames, keep_overlay=not args.no_video, show=args.show,
                               autocast=autocast_for(args))
        dropped = source.frames_dropped
    if not recording.tracks:
        raise InputError(f"{args.video}: no frame could be tracked")
    stopped = "stopped by Ctrl-C; " if recording.interrupted else ""
    print(f"{stopped}live: {len(recording.tracks)} frame(s) tracked at {recording.achieved_fps:.1f} frames/s, "
          f"{dropped} dropped", file=sys.stderr)
    if recording.overlay:
        write_video(output_dir / "overlay.mp4", recording.overlay, fps=max(recording.achieved_fps, 1.0))
    result = recording.as_arrays()
    save_results(result, output_dir)
    try:
        check_query_frames(recording.queries, len(recording.tracks), args.video)
    except InputError as err:
        raise InputError(f"{err}; the tracks of the other queries are saved in {output_dir}/") from None
    return result


def track_with_ensemble(args: argparse.Namespace, ensemble: EnsembleTracker,
                        output_dir: Path) -> dict[str, np.ndarray]:
    """Decode the video (up to --max_frames), run every candidate tracker and the verifier on all of it."""
    frames = []
    try:
        for frame in tqdm(iter_video_frames(args.video), desc="decoding", unit="frame", total=args.max_frames):
            if args.max_frames is not None and len(frames) == args.max_frames:
                break
            frames.append(frame)
    except VideoReadError as err:
        if not frames:
            raise
        print(f"warning: {err}; tracking the {len(frames)} frame(s) decoded so far", file=sys.stderr)
    if not frames:
        raise InputError(f"{args.video}: no frame could be decoded")
    height, width = frames[0].shape[:2]
    queries = load_queries(args.queries_json, args.grid_size, height, width)
    check_query_frames(queries, len(frames), args.video)
    device = torch.device(args.device)
    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)[None].to(device, torch.float32)
    with autocast_for(args):
        outcome = ensemble.track(video, torch.from_numpy(queries)[None].to(device))
    tracks, visibility = outcome.tracks[0].float().cpu().numpy(), outcome.visibility[0].cpu().numpy()
    if not args.no_video:
        colours = point_colours(len(queries))
        overlay = [draw_frame(frame, tracks[max(0, t - 7):t + 1], visibility[max(0, t - 7):t + 1], colours)
                   for t, frame in enumerate(frames)]
        write_video(output_dir / "overlay.mp4", overlay, fps=video_fps(args.video))
    result = {"queries": queries, "tracks": tracks, "visibility": visibility,
              "candidates": np.array(outcome.candidate_names),
              "candidate_tracks": outcome.candidate_tracks[0].float().cpu().numpy(),
              "candidate_visibility": outcome.candidate_visibility[0].cpu().numpy(),
              "chosen": outcome.choice[0].cpu().numpy()}
    save_results(result, output_dir)
    return result


def save_results(result: dict[str, np.ndarray], output_dir: Path) -> None:
    """tracks.npz and tracks.json (queries, tracks, visibility) in ``output_dir``."""
    np.savez_compressed(output_dir / "tracks.npz", **result)
    as_lists = {key: value.tolist() for key, value in result.items()}
    (output_dir / "tracks.json").write_text(json.dumps(as_lists))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        if args.ensemble is not None:
            result = track_with_ensemble(args, build_ensemble_tracker(args), output_dir)
        elif args.backend == "onnx":
            predictor = OnnxPredictor.on_torch_device(args.onnx_dir, args.device, args.support_grid_size)
            live = is_live_source(args.video, args.realtime)
            result = (track_live_source if live else track)(args, predictor, output_dir)
        elif is_live_source(args.video, args.realtime):
            predictor = build_predictor(args)
            result = track_live_source(args, predictor, output_dir)
        elif args.backward:
            result = track_both_ways(args, build_predictor(args), output_dir)
        else:
            result = track(args, build_predictor(args), output_dir)
    except (ConfigError, CheckpointError, BackboneUnavailableError, VideoReadError, InputError,
            ExportFormatError, BackendError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    frames, points = result["visibility"].shape
    print(f"tracked {points} points through {frames} frames; results in {output_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
