"""The structure of the code base as promised: one fast switch that changes no result, a model whose weights stay
the checkpoint's whatever runs it, a memory rule shared by the memory and the step plan, imports that go one way
only (``model`` -> nothing of the repository; no cycles between packages), and every stage marked as a profiler
range."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT
from tests.tiny_model import tiny_config, tiny_model_config
from trackon2.model.memory import QueryMemory
from trackon2.model.stages import RANGE_PREFIX, STAGES
from trackon2.model.trackon import TrackOn2
from trackon2.runtime.fast import is_fast, set_fast
from trackon2.runtime.fast.window import WindowMemory
from trackon2.runtime.plan import StepPlan
from trackon2.runtime.predictor import Predictor

FLOAT32 = 1e-3  # pixels / logits: float32 rounding through the whole tiny model
GOLDEN = 1e-6  # the conformance tests' tolerance (float64)
# The documented compatibility alias: ``model.trackon_predictor`` re-exports ``runtime.predictor``.
ALIAS = Path("trackon2/model/trackon_predictor.py")

VIDEO_SIZE = (70, 100)
QUERIES = torch.tensor([[[0, 10.0, 20.0], [1, 50.0, 30.0], [3, 99.0, 69.0], [0, 30.0, 50.0], [2, 70.0, 35.0]]])


def _video(frames: int = 5, seed: int = 3) -> torch.Tensor:
    return torch.rand(1, frames, 3, *VIDEO_SIZE, generator=torch.Generator().manual_seed(seed)) * 255


def _tiny_model() -> TrackOn2:
    torch.manual_seed(0)
    return TrackOn2(tiny_model_config())


def _predictor(model: TrackOn2, fast: bool = True, **overrides) -> Predictor:
    return Predictor(tiny_config(**overrides), model=model, support_grid_size=3, fast=fast)


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, tolerance: float, name: str) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}"
    error = (actual.double() - expected.double()).abs().max().item()
    assert error < tolerance, f"{name}: max abs error {error:.3e}"


def _assert_same_tracks(actual: tuple[torch.Tensor, torch.Tensor], expected: tuple[torch.Tensor, torch.Tensor],
                        tolerance: float, name: str) -> None:
    _assert_close(actual[0], expected[0], tolerance, f"{name} trajectory")
    assert torch.equal(actual[1], expected[1]), f"{name}: visibility differs"


# ------------------------------------------------------------------------------------ (a) the switch changes nothing
def test_predictor_tracks_the_same_with_the_fast_switch_on_and_off():
    model = _tiny_model()
    fast = _predictor(copy.deepcopy(model), fast=True)
    plain = _predictor(model, fast=False)
    assert is_fast(fast.model) and not is_fast(plain.model)
    video = _video()
    _assert_same_tracks(fast(video, QUERIES), plain(video, QUERIES), FLOAT32, "fast vs plain")


def test_training_forward_is_the_same_with_the_fast_switch_on_and_off():
    plain = _tiny_model().eval()
    fast = set_fast(copy.deepcopy(plain))
    video = _video(4)
    queries = QUERIES[:, :4].clone()
    with torch.no_grad():
        expected = plain(video, queries, p_mask=0.0)
        out = fast(video, queries, p_mask=0.0)
    assert set(out) == set(expected)
    for key in expected:
        _assert_close(out[key], expected[key], FLOAT32, key)


def test_switching_back_gives_the_plain_model_with_the_same_state_dict():
    model = _tiny_model()
    names = {name: value.clone() for name, value in model.state_dict().items()}
    classes = [type(module) for module in model.modules()]
    set_fast(model)
    assert is_fast(model) and model.state_dict().keys() == names.keys()
    set_fast(model, False)
    assert [type(module) for module in model.modules()] == classes
    assert all(torch.equal(value, names[name]) for name, value in model.state_dict().items())


def test_golden_online_and_training_forward_with_the_fast_switch_on(golden, golden_model):
    fast = set_fast(copy.deepcopy(golden_model))
    online = fast.forward_online(golden["video"].clone(), golden["queries"].clone())
    for key, expected in golden["forward_online"].items():
        _assert_close(online[key], expected, GOLDEN, key)
    with torch.no_grad():
        out = fast(golden["video"].clone(), golden["queries"].clone(), p_mask=0.0)
    assert set(out) == set(golden["forward"])
    for key, expected in golden["forward"].items():
        _assert_close(out[key], expected, GOLDEN, key)


@pytest.mark.parametrize("fast", [True, False])
def test_golden_predictor_with_the_fast_switch_on_and_off(golden, golden_checkpoint, float64_default, fast):
    settings = golden["predictor"]
    config = {**golden["config"], "backbone_config": golden["backbone_config"], "M_i": settings["M_i"],
              "delta_v": settings["delta_v"]}
    predictor = Predictor(config, checkpoint_path=golden_checkpoint, support_grid_size=settings["support_grid_size"],
                          fast=fast, pin_query_points=False)
    assert is_fast(predictor.model) == fast
    trajectory, visibility = predictor(golden["video"].clone(), golden["queries"].clone())
    _assert_close(trajectory, settings["trajectory"], GOLDEN, "trajectory")
    assert torch.equal(visibility, settings["visibility"])


# ------------------------------------------------------------------------ (b) the weights stay the checkpoint's
def test_a_used_model_saves_and_loads_strictly_into_a_fresh_model():
    predictor = _predictor(_tiny_model())
    video = _video()
    tracks = predictor(video, QUERIES)
    state = predictor.model.state_dict()
    fresh = TrackOn2(tiny_model_config())
    reference = fresh.state_dict()
    assert {name: value.shape for name, value in state.items()} == {name: value.shape for name, value in
                                                                    reference.items()}
    fresh.load_state_dict(state, strict=True)
    _assert_same_tracks(_predictor(fresh)(video, QUERIES), tracks, 1e-6, "reloaded")


def test_predictor_save_round_trip(tmp_path):
    predictor = _predictor(_tiny_model())
    video = _video()
    tracks = predictor(video, QUERIES)
    path = tmp_path / "weights.pt"
    predictor.save(path)
    loaded = Predictor(tiny_config(), checkpoint_path=path, support_grid_size=3)
    _assert_same_tracks(loaded(video, QUERIES), tracks, 1e-6, "saved and loaded")


def test_two_predictors_over_one_model_track_as_each_alone():
    shared = _tiny_model()
    alone_a = _predictor(copy.deepcopy(shared))
    alone_b = _predictor(copy.deepcopy(shared), M_i=3)
    a, b = _predictor(shared), _predictor(shared, M_i=3)
    assert a.model is b.model and (a.memory_size, b.memory_size) == (6, 3)
    video = _video()
    expected_a, expected_b = alone_a(video, QUERIES), alone_b(video, QUERIES)
    assert (expected_a[0] - expected_b[0]).abs().max() > 1e-3  # the memory sizes do make a difference
    first_a = a(video, QUERIES)
    got_b = b(video, QUERIES)
    second_a = a(video, QUERIES)
    checks = ((first_a, expected_a, "a"), (got_b, expected_b, "b"), (second_a, expected_a, "a again"))
    for got, expected, name in checks:
        _assert_same_tracks(got, expected, 1e-6, name)

    streamed = {name: [] for name in ("a", "b", "alone_a", "alone_b")}  # streams stepped in turn keep apart
    for predictor in (a, b, alone_a, alone_b):
        predictor.reset()
    for t in range(video.shape[1]):
        new = QUERIES[0, :2, 1:] if t == 0 else None
        for name, predictor in (("a", a), ("b", b), ("alone_a", alone_a), ("alone_b", alone_b)):
            streamed[name].append(predictor.forward_frame(video[0, t], new)[0])
    for name in ("a", "b"):
        _assert_close(torch.stack(streamed[name]), torch.stack(streamed[f"alone_{name}"]), 1e-6, f"stream {name}")


def test_a_copied_fast_model_and_a_dtype_round_trip_track_the_same():
    predictor = _predictor(_tiny_model())
    video = _video()
    tracks = predictor(video, QUERIES)
    copied = copy.deepcopy(predictor.model)
    assert is_fast(copied)
    _assert_same_tracks(_predictor(copied)(video, QUERIES), tracks, 1e-6, "deep copy")
    predictor.model.double()
    double_tracks = predictor(video.double(), QUERIES.double())
    _assert_same_tracks(double_tracks, tracks, FLOAT32, "float64")
    predictor.model.float()
    _assert_same_tracks(predictor(video, QUERIES), tracks, 1e-6, "float64 and back")


# ------------------------------------------------------------------------------------------- (c) the memory rule
def _leading_empty(empty: torch.Tensor) -> torch.Tensor:
    """(..., L) masks -> (...) the number of leading True slots."""
    return empty.long().cumprod(-1).sum(-1)


@pytest.mark.parametrize("memory_class", [QueryMemory, WindowMemory])
@pytest.mark.parametrize("mode", ["inference", "no_grad"])
def test_leading_empty_slots_is_the_rule_the_memory_writes_by(memory_class, mode):
    """For random query start frames, after T frames each query's memory has the rule's leading empty slots for
    its number of writes, and the step plan of frame T skips the rule's count for the earliest active query."""
    g = torch.Generator().manual_seed(11)
    context = torch.inference_mode if mode == "inference" else torch.no_grad
    for trial in range(25):
        capacity = int(torch.randint(1, 9, (1,), generator=g))
        frames = int(torch.randint(0, 13, (1,), generator=g))
        times = torch.randint(0, frames + 3, (2, 3), generator=g)
        like = torch.zeros(1, 4)
        empty = QueryMemory.empty_like(2, 3, capacity, like)
        memory = memory_class(empty.features, empty.empty)
        with context():
            for t in range(frames):
                memory.write(torch.randn(2, 3, 4, generator=g), times <= t)
        leading = _leading_empty(memory.empty)
        for b in range(2):
            for n in range(3):
                writes = max(frames - int(times[b, n]), 0)
                assert int(leading[b, n]) == QueryMemory.leading_empty_slots(capacity, writes), (
                    f"trial {trial}: capacity {capacity}, {writes} writes")
        active = times <= frames
        plan = StepPlan.from_times(times, frames, capacity, torch.device("cpu"), skip_empty_slots=True)
        if bool(active.any()):
            earliest = QueryMemory.leading_empty_slots(capacity, frames - int(times[active].min()))
            assert plan.empty_slots == earliest == int(_leading_empty(memory.empty.all(1).all(0)[None])[0])
        else:
            assert plan.empty_slots == 0 and plan.decode is None


# ---------------------------------------------------------------------------------------------------- (d) imports
PACKAGE = "trackon2"


def _repository_nodes() -> tuple[dict[Path, str], set[str]]:
    """Every Python file of the repository (outside the venv) -> its node: the subpackage of ``trackon2`` it is in
    (or the module name of a module directly in ``trackon2``), else the top-level folder or script it is; and the set
    of nodes."""
    files = {}
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if relative.parts[0].startswith(".") or relative.parts[0] == "build" or "node_modules" in relative.parts:
            continue
        parts = relative.parts[1:] if relative.parts[0] == PACKAGE else relative.parts
        files[relative] = parts[0] if len(parts) > 1 else Path(parts[0]).stem
    return files, set(files.values())


def _node_of_module(module: str) -> str:
    """The node of an absolute module name: ``trackon2.model.x`` -> ``model``, ``tests.x`` -> ``tests``."""
    parts = module.split(".")
    return parts[1] if parts[0] == PACKAGE and len(parts) > 1 else parts[0]


def _imported_nodes(relative: Path, nodes: set[str]) -> set[str]:
    """The repository nodes a file imports (anywhere in it, function bodies included)."""
    tree = ast.parse((ROOT / relative).read_text(), filename=str(relative))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            modules = [".".join(relative.parts[:-node.level])]
        elif isinstance(node, ast.ImportFrom) and node.module == PACKAGE:
            modules = [f"{PACKAGE}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        found.update(name for name in map(_node_of_module, modules) if name in nodes)
    return found


def test_the_model_imports_nothing_else_of_the_repository():
    files, nodes = _repository_nodes()
    assert {"model", "runtime", "evaluation", "training", "dataset", "webapp", "utils"} <= nodes
    model_files = [path for path, node in files.items() if node == "model" and path != ALIAS]
    assert len(model_files) > 10
    foreign = {str(path): sorted(_imported_nodes(path, nodes) - {"model"}) for path in model_files}
    assert {path: names for path, names in foreign.items() if names} == {}
    assert "runtime" in _imported_nodes(ALIAS, nodes)  # the alias is the one exception (and it is excluded)


def test_no_import_cycle_between_the_repositorys_packages():
    files, nodes = _repository_nodes()
    graph: dict[str, set[str]] = {node: set() for node in nodes}
    for path, node in files.items():
        if path != ALIAS:
            graph[node] |= _imported_nodes(path, nodes) - {node}
    assert "model" in graph["runtime"] and graph["model"] == set()

    state: dict[str, str] = {}

    def cycle_from(node: str, trail: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return trail[trail.index(target):] + [target] if target in trail else [node, target]
            if target not in state:
                found = cycle_from(target, trail + [target])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = cycle_from(start, [start])
            assert cycle is None, f"import cycle between packages: {' -> '.join(cycle)}"


# -------------------------------------------------------------------------------------------- (e) stage ranges
@pytest.mark.parametrize("fast", [True, False])
def test_every_stage_is_a_profiler_range_of_a_tracked_frame(fast):
    predictor = _predictor(_tiny_model(), fast=fast)
    frame = _video(1)[0, 0]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        predictor.track_frame(frame, QUERIES[0, :2, 1:])
    ranges = {event.name[len(RANGE_PREFIX):] for event in profile.events() if event.name.startswith(RANGE_PREFIX)}
    assert set(STAGES) <= ranges, f"stages without a range: {sorted(set(STAGES) - ranges)}"
