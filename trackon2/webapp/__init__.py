"""The interactive web app (``python app.py``): click-to-track on a video and live webcam tracking."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: the app talks to its own page only
