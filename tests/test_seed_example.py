"""The seed document's own Python client (polling flow), unchanged but for the base URL and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.conftest import Daemon, image_bytes

# Copied verbatim from seeds/v1-api-skyconvert.txt, "Convert a File", Python tab.
SEED_EXAMPLE = """
import requests, time
API_KEY = "YOUR_API_KEY"
BASE = "https://api.skyconvert.net/v1"
# 1. Start conversion
resp = requests.post(f"{BASE}/convert",
headers={"X-API-Key": API_KEY},
files={"file": open("input.png", "rb")},
data={"filetype": "image", "output_format": "webp"},
)
job = resp.json()
job_id = job["job_id"]
# 2. Poll until done
while True:
    status = requests.get(f"{BASE}/status/{job_id}",
    headers={"X-API-Key": API_KEY}).json()
    if status["status"] == "finished":
        break
    if status["status"] == "failed":
        raise Exception(status.get("error"))
    time.sleep(2)
# 3. Download result
out = requests.get(f"{BASE}/download/{job_id}",
headers={"X-API-Key": API_KEY})
with open("output.webp", "wb") as f:
    f.write(out.content)
"""


def test_seed_python_example_gets_a_webp(daemon: Daemon, tmp_path: Path) -> None:
    key = daemon.create_key("seed-example")
    script = SEED_EXAMPLE.replace("YOUR_API_KEY", key).replace(
        "https://api.skyconvert.net/v1", daemon.base
    )
    (tmp_path / "client.py").write_text(script)
    (tmp_path / "input.png").write_bytes(image_bytes("PNG", (120, 80), "RGBA"))
    proc = subprocess.run(
        [sys.executable, "client.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / "output.webp") as im:
        assert im.format == "WEBP" and im.size == (120, 80) and im.mode == "RGBA"
