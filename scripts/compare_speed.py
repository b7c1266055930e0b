"""Side-by-side speed and output comparison of two checkouts of this repository.

    .venv/bin/python scripts/compare_speed.py --baseline /work/baseline --candidate . --rounds 3

Each round runs the baseline and the candidate in turn, each in its own process with PYTHONPATH pointing at its
checkout and one CPU thread, on the same random weights (``--config``, by default ``config/bench_dinov2_s.yaml``:
DINOv2-S dimensions built from ``backbone_config``, written once to ``--weights``), the same random clip at the
config's input size, ``--queries`` random user queries plus the ``--support_grid`` grid (20x20), inference memory
``--memory_size``. ``--device cuda`` runs both on the GPU (synchronised timing, peak memory reported),
``--amp`` under bfloat16 autocast. A process tracks ``--warmup`` frames untimed, then the timed
clip of ``--frames`` frames; with ``--stages`` it also reports milliseconds per stage (the profiler ranges the
model marks, read by this checkout's ``evaluation/speed/stage_timing.py``; a checkout whose model marks none
reports no stages). The report gives each round's frames/s,
the median ratio of wall-clock frames/s and of frames per CPU second (process time: less sensitive to other
processes sharing the cores), the largest trajectory difference and the number of visibility flips.

It also records, per frame and query, the K best first-correlation patches that go to re-ranking. Where the two
checkouts pick different top-K sets and the baseline's K-th and (K+1)-th scores are within ``--tie_tolerance``,
the tie was broken the other way by a last-bit difference and the query follows a slightly different but equally
valid path from there on. Such "top-K tie flips" (support queries included) are listed with their score gap; any
larger change is counted apart. Only when every change is a tie is the largest trajectory difference also given
without the user queries that took one, from that frame on (their influence on other queries through the query
self-attention stays in). Under bf16 exact score ties are common, and the recorded top-(K+1) may order them
differently from the model's own top-K.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent / "trackon2"
BENCH_CONFIG = PACKAGE / "config" / "bench_dinov2_s.yaml"


def _own_module(name: str):
    """evaluation/speed/<name>.py of this checkout, loaded by path so that it also serves the baseline's model."""
    spec = importlib.util.spec_from_file_location(name, PACKAGE / "evaluation" / "speed" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _start_with_full_memory(predictor, memory_seed: int = 2) -> None:
    """Every clip starts with a full memory: through the predictor's ``memory_filler`` where it has one;
    checkouts from before it get their ``model.init_state`` replaced (this script's own, for old baselines)."""
    import dataclasses

    import torch

    if hasattr(predictor, "memory_filler"):
        _own_module("steady_state").fill_memory_at_start(predictor)
        return
    model = predictor.model
    plain_init, plain_step = model.init_state, model.step
    drawn: dict = {}

    def full_init(batch: int, num_queries: int, like: torch.Tensor):
        state = plain_init(batch, num_queries, like)
        key = (tuple(state.memory.shape), state.memory.dtype)
        if key not in drawn:
            drawn[key] = torch.randn(state.memory.shape, generator=torch.Generator().manual_seed(memory_seed))
        state.memory = drawn[key].to(state.memory).clone()
        state.memory_mask = torch.zeros_like(state.memory_mask)
        return state

    def step_without_skip(*args, **kwargs):
        plan = kwargs.pop("plan", args[5] if len(args) > 5 else None)
        if plan is not None:
            plan = dataclasses.replace(plan, empty_slots=0)
        return plain_step(*args[:5], plan=plan, **kwargs)

    model.init_state, model.step = full_init, step_without_skip


def _checkout_predictor_class(checkout: Path) -> type:
    """The Predictor of the checkout in ``checkout``: under ``trackon2/`` in the package layout, at the top level
    in checkouts from before it (decided by the directory, so that an installed copy cannot stand in for it)."""
    if (checkout / "trackon2").is_dir():
        from trackon2.model.trackon_predictor import Predictor
    else:
        from model.trackon_predictor import Predictor
    return Predictor


def run_worker(args: argparse.Namespace) -> None:
    """Build the predictor of the checkout on PYTHONPATH, track the clip and save timings and outputs."""
    import torch

    Predictor = _checkout_predictor_class(Path.cwd())
    torch.set_num_threads(1)
    import yaml

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.set_float32_matmul_precision(args.matmul_precision)
    model_config = yaml.safe_load(Path(args.config).read_text())
    config = {**model_config, "M_i": args.memory_size}
    weights = Path(args.weights)
    if not weights.is_file():
        torch.manual_seed(0)
        untrained = Predictor({**config, "M_i": model_config["M"]}, support_grid_size=0)
        torch.save(untrained.model.state_dict(), weights)
    import inspect

    # Both sides return the model's own points on the query frame (checkouts that pin them to the query point
    # are told not to), so that the outputs compare like for like.
    same_outputs = {"pin_query_points": False} if "pin_query_points" in inspect.signature(Predictor).parameters else {}
    predictor = Predictor(config, checkpoint_path=weights, support_grid_size=args.support_grid,
                          **same_outputs).to(device).eval()
    if args.full_memory:
        _start_with_full_memory(predictor)
    generator = torch.Generator().manual_seed(1)
    height, width = model_config["input_size"]
    total = args.warmup + args.frames
    video = torch.randint(0, 256, (1, total, 3, height, width), generator=generator).float()
    xy = torch.rand(1, args.queries, 2, generator=generator) * torch.tensor([width - 1.0, height - 1.0])
    queries = torch.cat([torch.zeros(1, args.queries, 1), xy], dim=-1).to(device)
    warm_video, timed_video = video[:, :args.warmup].to(device), video[:, args.warmup:].to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp)
    top_k = _record_top_k(predictor.model)

    def synchronized() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.inference_mode(), autocast:
        if args.warmup:
            predictor(warm_video, queries)
        top_k.clear()
        timer = _own_module("stage_timing").StageTimer(device) if args.stages else None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        synchronized()
        began, began_cpu = time.perf_counter(), time.process_time()
        with _profiler(args.profile or args.stages, device) as profile:
            trajectory, visibility = predictor(timed_video, queries)
            synchronized()
        seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu
    if timer is not None:
        timer.add(profile)
    if args.profile:
        orders = (["self_cuda_time_total"] if device.type == "cuda" else []) + ["self_cpu_time_total"]
        tables = [profile.key_averages().table(sort_by=order, row_limit=40) for order in orders]
        Path(args.out + ".profile.txt").write_text("\n".join(tables))
    stages = timer.per_frame_ms(args.frames) if timer else {}
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    torch.save({"trajectory": trajectory.cpu(), "visibility": visibility.cpu(), "top_k_values": torch.stack(
        [values for values, _ in top_k]), "top_k_indices": torch.stack([indices for _, indices in top_k])},
               args.out + ".pt")
    Path(args.out).write_text(json.dumps({"fps": args.frames / seconds, "cpu_fps": args.frames / cpu_seconds,
                                          "stages_ms": stages, "peak_memory_bytes": peak}))


def _record_top_k(model) -> list:
    """Record (values, indices) of the K + 1 best scores of the correlation the re-ranking head receives, per step
    (found by shape among its inputs, so that it works on any checkout's model), on the host."""
    records: list = []

    def before_reranking(_module, inputs) -> None:
        for value in inputs:
            if hasattr(value, "dim") and value.dim() == 3 and value.shape[-1] == model.P:
                best = value.float().topk(model.K + 1, dim=-1)
                records.append((best.values[0].cpu(), best.indices[0].cpu()))

    model.reranking_head.register_forward_pre_hook(before_reranking)
    return records


def top_k_set_changes(base: dict, cand: dict, tie_tolerance: float) -> list[dict]:
    """(frame, query) where the two runs' top-K sets differ (support queries included), with the baseline's
    K-th / (K+1)-th score gap; ``tie`` marks a gap within ``tie_tolerance`` (a tie broken the other way)."""
    k = base["top_k_indices"].shape[-1] - 1
    base_sets = base["top_k_indices"][..., :k].sort(-1).values
    cand_sets = cand["top_k_indices"][..., :k].sort(-1).values
    changes = []
    for frame, query in (base_sets != cand_sets).any(-1).nonzero().tolist():
        values = base["top_k_values"][frame, query]
        gap = float(values[k - 1] - values[k])
        changes.append({"frame": frame, "query": query, "kth_score": float(values[k - 1]), "gap_to_next": gap,
                        "tie": gap <= tie_tolerance})
    return changes


def _profiler(enabled: bool, device: "torch.device"):
    """torch.profiler over the timed clip (CPU and, on a GPU, CUDA activity), or a context that yields None."""
    import contextlib

    import torch

    if not enabled:
        return contextlib.nullcontext()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    return torch.profiler.profile(activities=activities)


def _run_one(checkout: Path, args: argparse.Namespace, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--weights", args.weights,
               "--frames", str(args.frames), "--warmup", str(args.warmup), "--queries", str(args.queries),
               "--memory_size", str(args.memory_size), "--config", args.config, "--device", args.device,
               "--support_grid", str(args.support_grid), "--matmul_precision", args.matmul_precision,
               "--out", str(out)]
    command += [flag for flag, on in (("--stages", args.stages), ("--full_memory", args.full_memory),
                                      ("--amp", args.amp), ("--profile", args.profile)) if on]
    subprocess.run(command, env=env, cwd=checkout, check=True)
    return json.loads(out.read_text())


def compare(args: argparse.Namespace) -> dict:
    """Alternate baseline and candidate for ``--rounds`` rounds; return the per-round numbers and the summary."""
    import torch

    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="compare_speed_"))
    work.mkdir(parents=True, exist_ok=True)
    args.weights = args.weights or str(work / "weights.pt")
    rounds = []
    for index in range(args.rounds):
        row = {}
        for name, checkout in (("baseline", args.baseline), ("candidate", args.candidate)):
            row[name] = _run_one(Path(checkout).resolve(), args, work / f"{name}_{index}.json")
        row["ratio"] = row["candidate"]["fps"] / row["baseline"]["fps"]
        row["cpu_ratio"] = row["candidate"]["cpu_fps"] / row["baseline"]["cpu_fps"]
        peaks = "".join(f", {name} peak {row[name]['peak_memory_bytes'] / 1024**3:.2f} GiB"
                        for name in ("baseline", "candidate") if row[name].get("peak_memory_bytes"))
        print(f"round {index + 1}: baseline {row['baseline']['fps']:.3f} fps, candidate "
              f"{row['candidate']['fps']:.3f} fps, ratio {row['ratio']:.2f} (CPU-time ratio {row['cpu_ratio']:.2f})"
              f"{peaks}", flush=True)
        rounds.append(row)
    base = torch.load(work / "baseline_0.json.pt")
    cand = torch.load(work / "candidate_0.json.pt")
    distance = (base["trajectory"].double() - cand["trajectory"].double()).abs().amax(-1)[0]  # (T, N user queries)
    flips = int((base["visibility"] != cand["visibility"]).sum())
    changes = top_k_set_changes(base, cand, args.tie_tolerance)
    ties = [change for change in changes if change["tie"]]
    untied = distance.clone()
    if len(ties) == len(changes):  # every change is a tie: leave out the user queries that took one
        for tie in ties:
            if tie["query"] < untied.shape[1]:
                untied[tie["frame"]:, tie["query"]] = 0.0
    summary = {"median_ratio": statistics.median(r["ratio"] for r in rounds),
               "median_cpu_time_ratio": statistics.median(r["cpu_ratio"] for r in rounds), "rounds": len(rounds),
               "max_trajectory_diff_px": distance.max().item(), "visibility_flips": flips,
               "visibility_entries": base["visibility"].numel(), "top_k_tie_flips": ties,
               "top_k_changes_beyond_ties": len(changes) - len(ties),
               "max_tie_gap": max((tie["gap_to_next"] for tie in ties), default=0.0),
               "max_trajectory_diff_px_without_tie_flips": untied.max().item()}
    print(json.dumps({**summary, "top_k_tie_flips": len(ties)}, indent=2))
    return {"rounds": rounds, "summary": summary}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="/work/baseline", help="checkout measured as the reference")
    parser.add_argument("--candidate", default=str(HERE.parent), help="checkout measured against it")
    parser.add_argument("--rounds", type=int, default=3, help="alternating baseline/candidate rounds")
    parser.add_argument("--frames", type=int, default=3, help="timed frames per run")
    parser.add_argument("--warmup", type=int, default=1, help="untimed frames per run")
    parser.add_argument("--queries", type=int, default=256, help="random user queries (plus the 20x20 grid)")
    parser.add_argument("--memory_size", type=int, default=72, help="inference memory M_i")
    parser.add_argument("--support_grid", type=int, default=20, help="support grid size S (S^2 extra queries)")
    parser.add_argument("--config", default=str(BENCH_CONFIG), help="model config YAML with backbone_config")
    parser.add_argument("--device", default="cpu", help="torch device both checkouts run on")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--matmul_precision", default="high", choices=["highest", "high", "medium"],
                        help="torch.set_float32_matmul_precision on CUDA (high: TF32, as the reference's benchmark)")
    parser.add_argument("--tie_tolerance", type=float, default=1e-5,
                        help="largest K-th/(K+1)-th score gap counted as a tie when the top-K sets differ")
    parser.add_argument("--profile", action="store_true",
                        help="write a torch.profiler table of each timed clip next to the round's JSON")
    parser.add_argument("--stages", action="store_true", help="also time the stages")
    parser.add_argument("--full_memory", action="store_true",
                        help="start with every memory slot filled (steady state) instead of an empty memory")
    parser.add_argument("--weights", default=None, help="shared weights file (created if missing)")
    parser.add_argument("--output_json", default=None, help="write rounds and summary here")
    parser.add_argument("--work_dir", default=None,
                        help="folder for the weights and each run's outputs and profiles (default: a temporary one)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if min(args.rounds, args.frames, args.queries, args.memory_size) < 1 or min(args.warmup, args.support_grid) < 0:
        parser.error("--rounds, --frames, --queries and --memory_size must be positive, --warmup and "
                     "--support_grid >= 0")
    if args.tie_tolerance < 0:
        parser.error("--tie_tolerance must be >= 0")
    if not Path(args.config).is_file():
        parser.error(f"--config: file not found: {args.config}")
    args.config = str(Path(args.config).resolve())
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        run_worker(args)
        return
    result = compare(args)
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
