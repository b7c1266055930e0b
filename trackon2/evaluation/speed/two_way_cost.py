"""What tracking in both directions costs: a clip whose queries all start on its middle frame, tracked forward only
and in both directions (``Predictor(backward_tracking=True)``), in alternating runs so that load on the machine
hits both alike. The ratio is taken from the process's CPU seconds (with one thread, what other work on a shared
machine changes least); wall-clock seconds are reported too.

    python -m evaluation.speed.two_way_cost --config_path config/bench_dinov2_s.yaml --N_sqrt 16 --support_grid 20 \
        --memory_size 72 --height 384 --width 512 --num_frames 16 --repeats 2 --threads 1

The backward pass steps frames middle .. 0 (T // 2 + 1 of the T frames) over the frames the forward pass encoded
(kept within ``runtime.predictor.ENCODED_FRAMES_BUDGET``), so its frames cost their tracking only. Also reached through ``python -m evaluation.benchmark ... --two_way``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from trackon2.model.yaml_schema import ConfigError, config_file, load_config
from trackon2.runtime.predictor import Predictor, get_points_on_a_grid

SEED = 1234


@dataclass(frozen=True)
class TwoWayCost:
    """CPU and wall-clock seconds of each run (alternating: forward-only, two-way, ...) and their ratio."""

    num_frames: int
    query_frame: int
    num_queries: int
    forward_seconds: list[float]  # CPU seconds of the process
    two_way_seconds: list[float]
    forward_wall_seconds: list[float]
    two_way_wall_seconds: list[float]

    @property
    def ratio(self) -> float:
        """Median over the pairs of (two-way CPU seconds / forward-only CPU seconds)."""
        return statistics.median(b / f for f, b in zip(self.forward_seconds, self.two_way_seconds))

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "ratio": self.ratio}


def middle_frame_queries(grid_size: int, num_frames: int, height: int, width: int) -> torch.Tensor:
    """(1, S^2, 3) grid queries that all start on the clip's middle frame."""
    points = get_points_on_a_grid(grid_size, (height, width))
    return torch.cat([torch.full_like(points[..., :1], num_frames // 2), points], dim=-1)


def measure_two_way_cost(predictor: Predictor, video: torch.Tensor, queries: torch.Tensor, repeats: int = 3,
                         progress: bool = True) -> TwoWayCost:
    """Time ``repeats`` alternating pairs of runs of ``predictor`` on ``video`` (1, T, 3, H, W): forward only, then
    in both directions (the same weights; ``predictor``'s own setting is left as it is)."""
    forward_only, two_way = copy.copy(predictor), copy.copy(predictor)
    forward_only.backward_tracking, two_way.backward_tracking = False, True
    seconds: dict[bool, list[float]] = {False: [], True: []}
    wall: dict[bool, list[float]] = {False: [], True: []}
    runs = [(tracker, backward) for _ in range(repeats) for tracker, backward in ((forward_only, False),
                                                                                  (two_way, True))]
    with torch.inference_mode():
        for tracker, backward in tqdm(runs, desc="two-way cost", unit="run", disable=not progress):
            began, began_cpu = time.perf_counter(), time.process_time()
            tracker(video, queries)
            if video.device.type == "cuda":
                torch.cuda.synchronize(video.device)
            seconds[backward].append(time.process_time() - began_cpu)
            wall[backward].append(time.perf_counter() - began)
    return TwoWayCost(video.shape[1], int(queries[0, 0, 0]), queries.shape[1], seconds[False], seconds[True],
                      wall[False], wall[True])


def report_lines(cost: TwoWayCost) -> list[str]:
    return [
        f"[Two-way] {cost.num_queries} queries on frame {cost.query_frame} of {cost.num_frames}: forward-only "
        f"{statistics.median(cost.forward_seconds):.2f} CPU s ({statistics.median(cost.forward_wall_seconds):.2f} s "
        f"wall), both directions {statistics.median(cost.two_way_seconds):.2f} CPU s "
        f"({statistics.median(cost.two_way_wall_seconds):.2f} s wall), median of {len(cost.forward_seconds)} "
        "alternating pairs",
        f"[Two-way] cost ratio {cost.ratio:.2f}x in CPU time (pairs: "
        + ", ".join(f"{b / f:.2f}" for f, b in zip(cost.forward_seconds, cost.two_way_seconds)) + ")",
    ]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Cost of tracking in both directions")
    parser.add_argument("--config_path", required=True, help="model config YAML (random weights)")
    parser.add_argument("--N_sqrt", type=int, default=16, help="queries form an N_sqrt x N_sqrt grid")
    parser.add_argument("--support_grid", type=int, default=20, help="support grid size S (S^2 extra queries)")
    parser.add_argument("--memory_size", type=int, default=72, help="inference memory size M_i")
    parser.add_argument("--num_frames", type=int, default=16, help="frames of the random clip")
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="alternating pairs of runs")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--output_json", default=None, help="also write the timings here")
    args = parser.parse_args(argv)
    if not config_file(args.config_path).is_file():
        parser.error(f"--config_path: file not found: {args.config_path}")
    if min(args.N_sqrt, args.memory_size, args.height, args.width, args.repeats) < 1 or args.num_frames < 2:
        parser.error("--N_sqrt, --memory_size, --height, --width and --repeats must be positive, --num_frames >= 2")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    try:
        config = load_config(args.config_path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config.M_i = args.memory_size
    predictor = Predictor(config, support_grid_size=args.support_grid, pin_query_points=False).eval()
    video = torch.randint(0, 256, (1, args.num_frames, 3, args.height, args.width),
                          generator=torch.Generator().manual_seed(SEED)).float()
    queries = middle_frame_queries(args.N_sqrt, args.num_frames, args.height, args.width)
    cost = measure_two_way_cost(predictor, video, queries, args.repeats)
    print("\n".join(report_lines(cost)), flush=True)
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(cost.to_dict(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
