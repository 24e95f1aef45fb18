"""The tests' loopback HTTP server of data folders, which records what it was asked."""

from __future__ import annotations

import http.server

# Every request the folders' servers answered, by base URL: "GET /green_tripdata_...".
SERVED_REQUESTS: dict[str, list[str]] = {}


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        host, port = self.server.server_address[:2]
        SERVED_REQUESTS.setdefault(f"http://{host}:{port}", []).append(
            f"{self.command} {self.path}"
        )
