"""convertd: a self-hosted conversion daemon with a SkyConvert-compatible v1 API and a
CloudConvert-compatible v2 API."""

__version__ = "0.1.0"
