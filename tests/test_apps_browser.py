"""Drive the real app in headless Chromium: pick checkpoints, submit a prompt, see every answer."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium (make install-dev)")]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_compare_in_a_browser(tiny_run, tiny_sft, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    root = tmp_path / "runs"
    for stage in ("data", "base", "sft"):
        shutil.copytree(tiny_run / stage, root / "t" / stage)
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "ladder.apps.compare", "--runs_dir", str(root),
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, wait_until="networkidle", timeout=120_000)
            page.get_by_text("t/base").first.wait_for(timeout=60_000)  # both picked by default
            page.get_by_text("t/sft").first.wait_for(timeout=60_000)
            box = page.locator("#prompt textarea")
            box.fill("What is 12 + 5?")
            page.locator("#compare").click()
            for i in (0, 1):
                page.wait_for_function(
                    f"() => document.querySelector('#answer-{i} textarea')?.value.trim().length > 0",
                    timeout=120_000)
            page.wait_for_function("() => document.querySelector('#verdict-1')?.innerText.includes('format')",
                                   timeout=120_000)
            answers = [page.locator(f"#answer-{i} textarea").input_value() for i in (0, 1)]
            assert all(a.strip() for a in answers)
            assert "few-shot prompt (base model)" in page.locator("#verdict-0").inner_text()
            assert "chat template" in page.locator("#verdict-1").inner_text()
            shot = Path(os.environ.get("LADDER_SCREENSHOT", tmp_path / "app.png"))
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
