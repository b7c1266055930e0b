"""Trackers and ensembles for the evaluation, behind one interface and one registry (see ``base`` and
``registry``)."""

from trackon2.evaluation.trackers.base import Ensemble, Tracker, ensemble_for_video, tracker_identity
from trackon2.evaluation.trackers.registry import (
    TrackerEntry,
    TrackerRegistryError,
    build_tracker,
    check_tracker,
    get_entry,
    register_tracker,
    tracker_names,
)

__all__ = [
    "Ensemble",
    "Tracker",
    "TrackerEntry",
    "TrackerRegistryError",
    "build_tracker",
    "check_tracker",
    "ensemble_for_video",
    "get_entry",
    "register_tracker",
    "tracker_identity",
    "tracker_names",
]
