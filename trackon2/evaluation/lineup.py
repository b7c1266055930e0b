"""The trackers of one evaluation run, from the command line: ``--model_names`` and ``--tracker_options``.

``--model_names`` lists registry entries (``evaluation.trackers``), each optionally as ``LABEL=ENTRY`` so that one
entry can appear twice (``a=trackon2 b=trackon2``). An ensemble chooses among the trackers listed before it.
``--tracker_options LABEL.KEY=VALUE`` sets an entry's option (values read as YAML: ``3`` is a number, a path stays
text); ``--checkpoint`` / ``--model_config_path`` are the ``trackon2`` entry's checkpoint and config. Every option and
file is checked before anything is built, so a missing checkpoint is one line before any work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import yaml

from trackon2.evaluation.trackers import TrackerRegistryError, build_tracker, check_tracker, get_entry, tracker_identity
from trackon2.evaluation.trackers.trackon import CONFIG_AND_CHECKPOINT

_FORBIDDEN = "=./ ,"


@dataclass(frozen=True)
class TrackerSpec:
    """One listed tracker or ensemble: its label in the results, its registry entry and the options given to it."""

    label: str
    entry: str
    ensemble: bool
    options: dict[str, Any] = field(default_factory=dict)


def _split_name(item: str) -> tuple[str, str]:
    label, _, entry = item.partition("=") if "=" in item else (item, "", item)
    if not label or any(c in label for c in _FORBIDDEN):
        raise TrackerRegistryError(f"--model_names {item!r}: a label must be non-empty without '=', '.', '/', ',' "
                                   "or spaces")
    return label, entry


def _parse_options(items: Sequence[str], labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    options: dict[str, dict[str, Any]] = {label: {} for label in labels}
    for item in items:
        target, equals, value = item.partition("=")
        label, dot, key = target.partition(".")
        if not equals or not dot or not key:
            raise TrackerRegistryError(f"--tracker_options {item!r}: expected LABEL.KEY=VALUE")
        if label not in options:
            raise TrackerRegistryError(f"--tracker_options {item!r}: {label!r} is not in --model_names "
                                       f"({', '.join(labels)})")
        try:
            options[label][key] = yaml.safe_load(value) if value else None
        except yaml.YAMLError:
            options[label][key] = value
    return options


def parse_lineup(model_names: Sequence[str], tracker_options: Sequence[str] = (), checkpoint: str | None = None,
                 config: str | None = None) -> list[TrackerSpec]:
    """The listed trackers, checked: known entries, unique labels, options they take, files that exist, at least one
    tracker before each ensemble."""
    names = [_split_name(item) for item in model_names]
    labels = [label for label, _ in names]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise TrackerRegistryError(f"--model_names lists {', '.join(repeated)} twice; give each a label "
                                   "(e.g. a=trackon2 b=trackon2)")
    options = _parse_options(tracker_options, labels)
    specs, trackers_so_far = [], 0
    for label, entry_name in names:
        entry = get_entry(entry_name)
        given = options[label]
        if entry.name == CONFIG_AND_CHECKPOINT:
            given = {**{k: v for k, v in (("checkpoint", checkpoint), ("config", config)) if v is not None}, **given}
        if entry.ensemble and trackers_so_far == 0:
            raise TrackerRegistryError(f"--model_names: the ensemble {label!r} needs at least one tracker listed "
                                       "before it")
        trackers_so_far += not entry.ensemble
        try:
            check_tracker(entry.name, **given)
        except TrackerRegistryError as exc:
            raise TrackerRegistryError(f"{label}: {exc}" if not str(exc).startswith(label) else str(exc)) from None
        specs.append(TrackerSpec(label, entry.name, entry.ensemble, given))
    unused = [flag for flag, value in (("--checkpoint", checkpoint), ("--model_config_path", config)) if value]
    if unused and not any(spec.entry == CONFIG_AND_CHECKPOINT for spec in specs):
        raise TrackerRegistryError(f"{' and '.join(unused)} {'is' if len(unused) == 1 else 'are'} for the "
                                   f"{CONFIG_AND_CHECKPOINT} entry, which --model_names does not list (give "
                                   "LABEL.checkpoint=FILE to choose another tracker's weights)")
    return specs


def build_lineup(specs: Sequence[TrackerSpec], shared: dict[str, Any]) -> dict[str, Any]:
    """Every listed tracker and ensemble built, by label; ``shared`` options (device, the benchmark's name,
    ...) go to the entries that take them, under the options given to each."""
    return {spec.label: build_tracker(spec.entry, **{**get_entry(spec.entry).accepted(shared), **spec.options})
            for spec in specs}


def lineup_settings(specs: Sequence[TrackerSpec], built: dict[str, Any]) -> list[dict[str, Any]]:
    """JSON-normalised description of every listed tracker (entry, options, identity), for the results and for
    resuming only a run with the same trackers."""
    settings = [{"label": spec.label, "entry": spec.entry, "ensemble": spec.ensemble, "options": spec.options,
                 "identity": tracker_identity(built[spec.label])} for spec in specs]
    return json.loads(json.dumps(settings, default=str))
