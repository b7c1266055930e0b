"""Video files, live sources (cameras, streams), the live tracking loop and drawing tracks on frames."""
