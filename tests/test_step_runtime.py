"""The per-frame step at run time (``runtime.online``): no host synchronisation, the step plan, exact skipping of
empty memory slots, bf16 autocast, and batches of independent videos."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.tiny_model import tiny_config, tiny_model_config
from trackon2.model.trackon import TrackOn2
from trackon2.runtime.fast import set_fast
from trackon2.runtime.online import OnlineTracker
from trackon2.runtime.plan import StepPlan
from trackon2.runtime.predictor import Predictor

# Ops that copy a device value to the host (and so wait for the GPU) or that need such a copy to size a result.
SYNCING_OPS = ("aten._local_scalar_dense", "aten.nonzero", "aten.is_nonzero", "aten.item")


class OpRecorder(TorchDispatchMode):
    """Records the name of every aten op dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def _frames(count: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, *size, generator=torch.Generator().manual_seed(seed))


def _model(fast: bool, **overrides) -> TrackOn2:
    torch.manual_seed(0)
    return set_fast(TrackOn2(tiny_model_config(**overrides)).eval().requires_grad_(False), fast)


def _plan_outside(tracker: OnlineTracker, plan: StepPlan) -> None:
    """Make the tracker's next step use ``plan``, decided before (outside the recorder): on the CPU the plan's
    own host work would otherwise be recorded too."""
    tracker.plan = lambda t, device: plan


@pytest.mark.parametrize("fast", [False, True])
def test_all_active_step_never_reads_the_device_back(fast):
    model = _model(fast)
    frames = _frames(3, model.input_size) * 255
    coords = torch.rand(1, 7, 2, generator=torch.Generator().manual_seed(1))
    tracker = OnlineTracker(model, 1, coords, memory_size=6)
    tracker.add_queries(coords, 0)
    with torch.inference_mode():
        for t in range(frames.shape[0]):
            _plan_outside(tracker, OnlineTracker.plan(tracker, t, frames.device))
            recorder = OpRecorder()
            with recorder:
                step = tracker.step(frames[t:t + 1])
            assert len(recorder.ops) > 100  # the recorder did see the step
            syncing = sorted({op for op in recorder.ops if op.startswith(SYNCING_OPS)})
            assert syncing == [], f"frame {t}: host synchronising ops {syncing}"
            assert torch.isfinite(step.points).all() and step.started.all()


def test_the_recorder_sees_the_synchronising_path():
    """With a plan read from the device masks (nonzero / item) the step synchronises: the recorder must notice."""
    model = _model(False)
    coords = torch.rand(1, 3, 2)
    tracker = OnlineTracker(model, 1, coords, memory_size=6)
    tracker.add_queries(coords, torch.tensor([[0, 0, 1]]))
    tracker.plan = lambda t, device: StepPlan.from_masks(tracker._device_times == t, tracker._device_times <= t)
    recorder = OpRecorder()
    with torch.inference_mode(), recorder:
        tracker.step(_frames(1, model.input_size) * 255)
    assert any(op.startswith(SYNCING_OPS) for op in recorder.ops)


def test_skipping_empty_memory_slots_is_exact():
    """A fast model on the CPU leaves out the memory slots empty for every query: the same tracks as without."""
    torch.manual_seed(0)
    model = set_fast(TrackOn2(tiny_model_config(M=6)).double().eval())
    g = torch.Generator().manual_seed(3)
    frames = torch.rand(4, 1, 3, *model.input_size, generator=g, dtype=torch.float64) * 255
    coords = torch.rand(1, 5, 2, generator=g, dtype=torch.float64)
    times = torch.tensor([[0, 0, 1, 1, 2]])
    memory_size = 6
    outputs = {}
    with torch.no_grad():
        for skip in (True, False):
            tracker = OnlineTracker(model, 1, coords, memory_size)
            tracker.add_queries(coords, times)
            points = []
            for t in range(frames.shape[0]):
                plan = OnlineTracker.plan(tracker, t, frames.device)
                assert plan.empty_slots == max(memory_size - t, 0)
                if not skip:
                    _plan_outside(tracker, StepPlan(plan.start, plan.decode, plan.all_active, 0))
                step = tracker.step(frames[t])
                points.append(torch.cat([step.points, step.v_logit[..., None], step.u_logit[..., None]], -1))
            outputs[skip] = torch.stack(points)
    assert (outputs[True] - outputs[False]).abs().max() < 1e-10


def test_plan_from_host_times_matches_plan_from_masks():
    times = torch.tensor([[0, 2, 1, 2], [1, 2, 0, 3]])
    for t in range(5):
        host = StepPlan.from_times(times, t, 4, torch.device("cpu"))
        read_back = StepPlan.from_masks(times == t, times <= t)
        assert host.all_active == read_back.all_active
        assert host.empty_slots == read_back.empty_slots == 0
        for mine, theirs in ((host.start, read_back.start), (host.decode, read_back.decode)):
            assert (mine is None) == (theirs is None)
            if isinstance(mine, torch.Tensor):
                assert torch.equal(mine, theirs)
            elif mine is not None:
                assert mine == theirs == slice(None)


def test_empty_memory_slots_are_skipped_when_asked_and_by_a_fast_model_on_the_cpu_only():
    times = torch.zeros(1, 3, dtype=torch.long)  # every query starts at frame 0: all active, none starting at 2
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert StepPlan.from_times(times, 2, 6, cpu).empty_slots == 0  # only when asked
    assert StepPlan.from_times(times, 2, 6, cpu, skip_empty_slots=True).empty_slots == 4
    assert StepPlan.from_times(times, 9, 6, cpu, skip_empty_slots=True).empty_slots == 0
    coords = torch.rand(1, 3, 2)
    for fast in (False, True):
        model = _model(fast)
        tracker = OnlineTracker(model, 1, coords, memory_size=6)
        tracker.add_queries(coords, times)
        assert tracker.plan(2, cpu).empty_slots == (4 if fast else 0)
        assert tracker.plan(2, cuda).empty_slots == 0  # fixed shapes on a GPU
        filled = OnlineTracker(model, 1, coords, memory_size=6, memory_filler=lambda shape, like: like.new_ones(shape))
        filled.add_queries(coords, times)
        assert filled.plan(2, cpu).empty_slots == 0  # a memory that starts full has no empty slots


@pytest.mark.parametrize("fast", [False, True])
def test_bf16_autocast_runs_and_roughly_agrees_with_float32(fast):
    model = _model(fast)
    video = _frames(4, (64, 96), seed=2).unsqueeze(0) * 255
    queries = torch.tensor([[[0, 10.0, 12.0], [0, 50.0, 30.0], [1, 80.0, 40.0], [0, 30.0, 50.0]]])
    reference = model.forward_online(video, queries)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reduced = model.forward_online(video, queries)
    assert torch.isfinite(reduced["P"]).all() and torch.isfinite(reduced["V_logit"]).all()
    started = (queries[0, :, 0][None, :] <= torch.arange(4)[:, None])[None]
    distance = (reduced["P"].float() - reference["P"]).norm(dim=-1)[started]
    assert distance.median() < 2.0, f"bf16 points are {distance.median():.2f} px from float32 (median)"
    assert (reduced["V_logit"].float() - reference["V_logit"]).abs().max() < 0.5


@pytest.mark.parametrize("fast", [False, True])
def test_a_batch_of_videos_matches_tracking_each_alone(float64_default, fast):
    torch.manual_seed(0)
    predictor = Predictor(tiny_config(), support_grid_size=3, fast=fast)
    video = torch.rand(2, 5, 3, 70, 100, generator=torch.Generator().manual_seed(3)) * 255
    queries = torch.tensor([[[0, 10.0, 20.0], [2, 50.0, 30.0], [0, 99.0, 69.0]],
                            [[1, 40.0, 10.0], [0, 5.0, 60.0], [3, 70.0, 35.0]]])
    trajectory, visibility = predictor(video, queries)
    assert trajectory.shape == (2, 5, 3, 2) and visibility.shape == (2, 5, 3)
    for b in range(2):
        alone, alone_visible = predictor(video[b:b + 1], queries[b:b + 1])
        assert (trajectory[b:b + 1] - alone).abs().max() < 1e-9
        assert torch.equal(visibility[b:b + 1], alone_visible)
