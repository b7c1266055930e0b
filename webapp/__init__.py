"""The interactive web app (``python app.py``): click-to-track on a video and live webcam tracking."""
