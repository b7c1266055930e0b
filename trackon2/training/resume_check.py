"""Compare the config a checkpoint was trained with against the config of the run resuming from it.

A changed value is not an error (changing ``epoch_num`` to train longer is common), but the user must learn which
value takes effect: the optimiser's and the schedule's state come from the checkpoint, everything else follows the
new config.
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping

# Where a value only says where things are or how fast they load, a change is not worth a word.
IGNORED_KEYS = frozenset({"movi_f_root", "tapvid_root", "model_save_path", "checkpoint_path", "num_workers",
                          "log_backend", "save_every"})
# lr and wd are stored in the optimiser's state, which the checkpoint restores.
OPTIMIZER_KEYS = frozenset({"lr", "wd"})
# The learning-rate schedule's length is part of the scheduler state the checkpoint restores.
SCHEDULE_KEYS = frozenset({"epoch_num", "iters_per_epoch"})


def _effect(key: str) -> str:
    if key in OPTIMIZER_KEYS:
        return "the saved value stays in effect (it is part of the restored optimiser state)"
    if key == "epoch_num":
        return ("the new value sets when training stops; the learning-rate schedule keeps the saved length")
    if key == "iters_per_epoch":
        return ("the new value sets the epoch length; the learning-rate schedule keeps the saved length and a "
                "mid-epoch position is counted in new iterations")
    return "the new value takes effect"


def _plain(value: Any) -> Any:
    """Tuples as lists, so that a value read back from a checkpoint compares equal to the config's."""
    return list(value) if isinstance(value, tuple) else value


def changed_settings(saved: Mapping[str, Any] | None, current: argparse.Namespace) -> list[str]:
    """One warning line per config key whose value differs from the checkpoint's (none when it saved no config)."""
    if not saved:
        return []
    lines = []
    for key, value in sorted(vars(current).items()):
        if key in IGNORED_KEYS or key not in saved:
            continue
        old, value = _plain(saved[key]), _plain(value)
        if old != value:
            lines.append(f"warning: resuming with {key}={value!r}, but the checkpoint was trained with "
                         f"{key}={old!r}: {_effect(key)}")
    return lines
