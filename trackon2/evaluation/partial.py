"""Incremental evaluation results on disk, so that an interrupted or failed run loses nothing and a rerun resumes.

Next to ``--output_json OUT`` every process appends to ``OUT.partial<rank>.jsonl``: a first line with the run's
settings, then one line per finished video ({"index", "name", "metrics"}), flushed and fsynced as soon as the video
is done. A rerun with the same settings reads every ``OUT.partial*.jsonl`` (so the number of processes may change),
keeps the evaluated videos and evaluates only the others; skipped (bad) videos are retried. A half-written last line
(a crash during the write) is ignored. The files are removed once the final ``OUT`` is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from trackon2.evaluation.errors import EvaluationStopped, SetupError
from trackon2.evaluation.evaluator import VideoResult


class PartialResultsError(ValueError):
    """Partial results that belong to another run, or an output location that cannot be written."""


def partial_paths(output: str | Path) -> list[Path]:
    """Every process's partial file of ``output``, in name order."""
    output = Path(output)
    return sorted(output.parent.glob(f"{output.name}.partial*.jsonl"))


def _read_lines(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by a crash, and nothing valid can follow it
    return records


def load_finished(output: str | Path, settings: Mapping[str, Any]) -> dict[int, VideoResult]:
    """The videos already evaluated with ``settings`` by earlier runs writing ``output``, by dataset index."""
    finished: dict[int, VideoResult] = {}
    for path in partial_paths(output):
        records = _read_lines(path)
        if not records:
            continue
        if records[0].get("settings") != dict(settings):
            raise PartialResultsError(
                f"{path} holds results of a run with other settings ({_difference(records[0].get('settings'), settings)}); "
                "rerun with the same settings to resume, or delete it to start over")
        for record in records[1:]:
            if record.get("error") is None and isinstance(record.get("metrics"), dict):
                finished[int(record["index"])] = VideoResult(int(record["index"]), str(record["name"]),
                                                             {k: _float(v) for k, v in record["metrics"].items()})
    return finished


def count_finished(output: str | Path) -> int:
    """How many evaluated videos the partial files of ``output`` hold (whatever their settings)."""
    return sum(1 for path in partial_paths(output) for record in _read_lines(path)[1:]
               if record.get("error") is None and isinstance(record.get("metrics"), dict))


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _difference(saved: Any, wanted: Mapping[str, Any]) -> str:
    if not isinstance(saved, dict):
        return "no settings line"
    keys = [key for key in wanted if saved.get(key) != wanted[key]]
    return ", ".join(f"{key}: {saved.get(key)!r} there, {wanted[key]!r} now" for key in keys) or "other keys"


def check_writable(output: str | Path) -> None:
    """Fail now, not after hours of evaluation, when ``output`` cannot be written as a file."""
    output = Path(output)
    if output.is_dir():
        raise PartialResultsError(f"--output_json {output} is a folder; give a file name such as {output / 'results.json'}")
    for parent in output.parents:
        if parent.exists():
            if not parent.is_dir():
                raise PartialResultsError(f"--output_json {output}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise PartialResultsError(f"--output_json {output}: no permission to write in {parent}")
            break


class PartialWriter:
    """Appends this process's finished videos to ``OUT.partial<rank>.jsonl`` (durably, one line per video)."""

    def __init__(self, output: str | Path, rank: int, settings: Mapping[str, Any]) -> None:
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        self.path = output.parent / f"{output.name}.partial{rank}.jsonl"
        kept = _read_lines(self.path) if self.path.exists() else []
        self._stream = open(self.path, "w")  # rewritten without a line a crash may have cut short
        for record in kept or [{"settings": dict(settings)}]:
            self._append(record)

    def _append(self, record: Mapping[str, Any]) -> None:
        self._stream.write(json.dumps(record, allow_nan=False) + "\n")
        self._stream.flush()
        os.fsync(self._stream.fileno())

    def __call__(self, result: VideoResult) -> None:
        metrics = {k: (v if v == v and abs(v) != float("inf") else None) for k, v in result.metrics.items()}
        self._append({"index": result.index, "name": result.name, "metrics": metrics, "error": result.error})

    def close(self) -> None:
        self._stream.close()


def remove_partials(output: str | Path) -> None:
    """Delete the partial files once the final results are written."""
    for path in partial_paths(output):
        path.unlink(missing_ok=True)


def strict_stop(first: VideoResult, finished: int, output_json: str | None) -> EvaluationStopped:
    """What ``--strict`` raises at the first video that cannot be evaluated (``first``), saying where the
    ``finished`` videos are kept and that rerunning resumes."""
    saved = f"saved in {', '.join(map(str, partial_paths(output_json)))}" if output_json else \
        "not saved (give --output_json to keep them)"
    return EvaluationStopped(f"--strict: stopped at video {first.index + 1} ({first.name}): {first.error}; the "
                             f"{finished} video(s) evaluated so far are {saved}; fix the video and rerun to resume")


def resume_share(output_json: str | None, settings: Mapping[str, Any], share: Sequence[int],
                 rank: int) -> tuple[list[VideoResult], list[int], PartialWriter | None]:
    """This rank's ``share`` of the videos split into the results an earlier run of the same evaluation saved (it
    says how many) and the indices still to evaluate, with the writer that saves each new result at once (None
    without ``output_json``). Partial files of other settings are a ``SetupError``."""
    if not output_json:
        return [], list(share), None
    try:
        finished = load_finished(output_json, settings)
    except PartialResultsError as exc:
        raise SetupError(str(exc)) from exc
    reused = [finished[i] for i in share if i in finished]
    if reused:
        print(f"Resuming: {len(reused)} video(s) already evaluated by an earlier run are reused", flush=True)
    return reused, [i for i in share if i not in finished], PartialWriter(output_json, rank, settings)

