"""Screenshot a page of the Prefect or MLflow UI with headless Chromium (for docs/img).

    .venv/bin/python scripts/screenshot.py URL OUT.png [--eval JS] [--wait 8] [--size 1400x900]

Chromium is driven over the DevTools protocol, so that a script (``--eval``) can act on the
page before the shot, e.g. close a side panel or open a tab. The UIs are JavaScript apps: the
shot is taken ``--wait`` seconds after loading, and again after ``--eval``.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


class Page:
    def __init__(self, websocket_url: str) -> None:
        self._socket = connect(websocket_url, max_size=None)
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._socket.recv())
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    def evaluate(self, script: str) -> Any:
        result = self.call("Runtime.evaluate", expression=script, awaitPromise=True)
        return result.get("result", {}).get("value")

    def close(self) -> None:
        self._socket.close()


def shoot(url: str, out: Path, width: int, height: int, wait: float, script: str | None) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = subprocess.Popen(
            [
                chromium,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not port_file.exists() or not port_file.read_text().strip():
                if time.monotonic() > deadline:
                    raise SystemExit("chromium did not open its DevTools port")
                time.sleep(0.2)
            port = port_file.read_text().split()[0]
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
            target = next(t for t in targets if t["type"] == "page")
            page = Page(target["webSocketDebuggerUrl"])
            page.call(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            page.call("Page.enable")
            page.call("Page.navigate", url=url)
            time.sleep(wait)
            if script:
                print(page.evaluate(script))
                time.sleep(max(2.0, wait / 2))
            shot = page.call("Page.captureScreenshot", format="png")
            out.write_bytes(base64.b64decode(shot["data"]))
            page.close()
        finally:
            browser.terminate()
            browser.wait(timeout=30)
    print(f"{out}: {out.stat().st_size:,} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--eval", dest="script", help="JavaScript to run before the shot")
    parser.add_argument("--wait", type=float, default=8.0, help="seconds for the page to render")
    parser.add_argument("--size", default="1400x900", help="WIDTHxHEIGHT")
    args = parser.parse_args()
    width, height = (int(part) for part in args.size.split("x"))
    shoot(args.url, args.out, width, height, args.wait, args.script)


if __name__ == "__main__":
    main()
