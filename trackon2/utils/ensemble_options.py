"""Command-line options for the verifier ensemble in the front ends: ``--ensemble`` names the candidate trackers,
``--verifier`` / ``--verifier_config`` the verifier that picks among them."""

from __future__ import annotations

import argparse
from pathlib import Path

from trackon2.model.checkpoint import CheckpointError
from trackon2.model.registry import is_variant_name, variant_names
from trackon2.model.verifier.checkpoint import RANDOM_WEIGHTS, VERIFIER_NAME, build_verifier
from trackon2.model.verifier.ensemble import VerifierEnsemble
from trackon2.model.verifier.ensemble_tracker import EnsembleTracker
from trackon2.runtime.predictor import Predictor
from trackon2.utils.model_options import DEFAULT_CONFIG, load_model_options

ENSEMBLE_HELP = (f"comma-separated candidate trackers for the verifier ensemble, each a released variant "
                 f"({', '.join(variant_names())}), a checkpoint file (with {DEFAULT_CONFIG}) or CONFIG:CHECKPOINT "
                 f"(CHECKPOINT '{RANDOM_WEIGHTS}' for random weights), e.g. trackon2-dinov2,track-on-r; the verifier "
                 "sees the whole video, so this runs offline (not on live sources)")


def add_ensemble_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ensemble", default=None, help=ENSEMBLE_HELP)
    parser.add_argument("--verifier", default=VERIFIER_NAME,
                        help=f"with --ensemble: the verifier checkpoint file, '{VERIFIER_NAME}' for the released "
                             f"weights (gorkaydemir/track_on_r on the hub) or '{RANDOM_WEIGHTS}' for random weights "
                             f"(default: {VERIFIER_NAME})")
    parser.add_argument("--verifier_config", default=None,
                        help="with --ensemble: the verifier's config (YAML with the keys of train_verifier.yaml) "
                             "(default: the released verifier's architecture)")


def tracker_spec(spec: str) -> tuple[str | None, str]:
    """(config file or None, checkpoint) of one ``--ensemble`` entry."""
    if is_variant_name(spec):
        return None, spec
    config, separator, checkpoint = spec.partition(":")
    if separator:
        if not config or not checkpoint:
            raise CheckpointError(f"--ensemble entry {spec!r}: expected CONFIG:CHECKPOINT with both parts")
        return config, checkpoint
    return None, spec


def check_ensemble_arguments(args: argparse.Namespace) -> str | None:
    """The problem with the ensemble options as one line, or None."""
    if args.ensemble is None:
        return None
    specs = [spec.strip() for spec in args.ensemble.split(",") if spec.strip()]
    if len(specs) < 2:
        return f"--ensemble needs at least two trackers separated by commas, got {args.ensemble!r}"
    if len(set(specs)) != len(specs):
        return f"--ensemble lists a tracker more than once: {args.ensemble!r}"
    if getattr(args, "checkpoint", None) is not None or getattr(args, "config", None) is not None:
        return "--ensemble names its trackers itself: give it without --checkpoint / --config"
    if args.verifier_config is not None and not Path(args.verifier_config).is_file():
        return f"--verifier_config {args.verifier_config}: file not found"
    return None


def build_ensemble_tracker(args: argparse.Namespace) -> EnsembleTracker:
    """The trackers and verifier named by ``--ensemble`` / ``--verifier`` on ``args.device``. Every checkpoint is
    resolved before any model is built, so a missing one is reported before any work."""
    specs = [spec.strip() for spec in args.ensemble.split(",") if spec.strip()]
    resolved = []
    for spec in specs:
        config_path, checkpoint = tracker_spec(spec)
        try:
            config, path = load_model_options(checkpoint, config_path)
        except CheckpointError as err:
            raise CheckpointError(f"--ensemble entry {spec!r}: {err}") from None
        if checkpoint == RANDOM_WEIGHTS and config.backbone_config is None:
            raise CheckpointError(f"--ensemble entry {spec!r}: random weights need a config with backbone_config")
        resolved.append((spec, config, path))
    verifier = build_verifier(args.verifier, args.verifier_config, args.device)
    trackers = {spec: Predictor(config, checkpoint_path=path, support_grid_size=args.support_grid_size).to(args.device)
                for spec, config, path in resolved}
    return EnsembleTracker(trackers, VerifierEnsemble(verifier))
