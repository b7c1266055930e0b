"""Synthetic point-tracking data: the public API and a command-line writer.

``generate_clip`` renders one clip with exact tracks and visibility (see ``dataset.synthetic_clip``); the ``write_*``
functions store clips in the layouts of MOVi-F, TAP-Vid (DAVIS, Kinetics, RGB-Stacking), RoboTAP, PointOdyssey,
Dynamic Replica and EgoPoints (see ``dataset.synthetic_writers``). Example::

    python -m dataset.synthetic --out /tmp/movi --format movi_f --num_videos 8
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Sequence

from trackon2.dataset.synthetic_clip import SyntheticClip, generate_clip
from trackon2.dataset.synthetic_writers import (
    tapvid_entry,
    write_dynamic_replica,
    write_ego_points,
    write_movi_f,
    write_point_odyssey,
    write_robotap,
    write_tapvid_davis,
    write_tapvid_kinetics,
    write_tapvid_rgb_stacking,
)

__all__ = [
    "SyntheticClip",
    "generate_clip",
    "tapvid_entry",
    "write_movi_f",
    "write_tapvid_davis",
    "write_tapvid_kinetics",
    "write_tapvid_rgb_stacking",
    "write_robotap",
    "write_point_odyssey",
    "write_dynamic_replica",
    "write_ego_points",
    "main",
]

# Formats whose output is a single pickle file get ``OUT/<format>.pkl``; the others fill the folder ``OUT``.
WRITERS: dict[str, Callable[..., object]] = {
    "movi_f": write_movi_f,
    "davis": write_tapvid_davis,
    "kinetics": write_tapvid_kinetics,
    "rgb_stacking": write_tapvid_rgb_stacking,
    "robotap": write_robotap,
    "point_odyssey": write_point_odyssey,
    "dynamic_replica": write_dynamic_replica,
    "ego_points": write_ego_points,
}
_SINGLE_FILE = ("davis", "rgb_stacking")
# The split each split-folder format is written under by default: the one the evaluation reads.
DEFAULT_SPLITS = {"dynamic_replica": "valid", "point_odyssey": "test"}


def main(argv: Sequence[str] | None = None) -> Path:
    """Parse the command line, write the requested dataset and return where it went."""
    parser = argparse.ArgumentParser(description="Write synthetic point-tracking videos in a dataset layout.")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--format", required=True, choices=sorted(WRITERS))
    parser.add_argument("--num_videos", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_frames", type=int, default=24)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--num_points", type=int, default=64)
    parser.add_argument("--split", default=None,
                        help="split folder of dynamic_replica / point_odyssey (default: the one the evaluation reads: "
                             + ", ".join(f"{name} {split}" for name, split in DEFAULT_SPLITS.items()) + ")")
    args = parser.parse_args(argv)
    if args.num_videos < 1:
        parser.error("--num_videos must be at least 1")
    if args.split is not None and args.format not in DEFAULT_SPLITS:
        parser.error(f"--split applies to {' and '.join(DEFAULT_SPLITS)} only")
    split = {"split": args.split or DEFAULT_SPLITS[args.format]} if args.format in DEFAULT_SPLITS else {}
    target = args.out / f"{args.format}.pkl" if args.format in _SINGLE_FILE else args.out
    args.out.mkdir(parents=True, exist_ok=True)
    WRITERS[args.format](
        target,
        args.num_videos,
        seed=args.seed,
        num_frames=args.num_frames,
        height=args.height,
        width=args.width,
        num_points=args.num_points,
        **split,
    )
    print(f"wrote {args.num_videos} {args.format} video(s) to {target}")
    return target


if __name__ == "__main__":
    main()
