"""The sample clip shipped with the package (the demo's default video and the web app's "Use the sample clip")."""

from pathlib import Path

SAMPLE_VIDEO = Path(__file__).resolve().parents[1] / "assets" / "sample.mp4"
