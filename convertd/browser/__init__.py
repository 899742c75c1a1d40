"""Chromium, kept warm, for capture-website and HTML -> PDF: the browser's life
(chromium.py), the gate every request of a page goes through (network.py), and what a capture
does with a page (capture.py)."""
