"""The Track-On-R verifier: a learned scorer that picks, frame by frame, the best of several trackers' tracks."""

from model.verifier.checkpoint import build_verifier
from model.verifier.config import VerifierConfig
from model.verifier.ensemble import VerifierEnsemble
from model.verifier.ensemble_tracker import EnsembleResult, EnsembleTracker
from model.verifier.verifier import Verifier

__all__ = ["EnsembleResult", "EnsembleTracker", "Verifier", "VerifierConfig", "VerifierEnsemble", "build_verifier"]
