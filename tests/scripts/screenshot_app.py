"""Screenshot the compare app on a runs folder (for the README): python tests/scripts/screenshot_app.py runs out.png"""

import os
import socket
import subprocess
import sys
import time

from playwright.sync_api import sync_playwright

runs, out = sys.argv[1], sys.argv[2]
prompt = sys.argv[3] if len(sys.argv) > 3 else "What is 47 + 38?"
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen([sys.executable, "-m", "ladder.apps.compare", "--runs_dir", runs, "--port", str(port)],
                          env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
try:
    for _ in range(240):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1500, "height": 900})
        page.goto(f"http://127.0.0.1:{port}", wait_until="networkidle", timeout=120_000)
        page.locator("#prompt textarea").fill(prompt)
        page.locator("#compare").click()
        page.wait_for_function("() => document.querySelector('#verdict-3')?.innerText.includes('format')",
                               timeout=180_000)
        page.screenshot(path=out, full_page=True)
        browser.close()
finally:
    server.terminate()
