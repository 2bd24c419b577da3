"""A small fake Home Assistant on loopback, for the home_assistant plugin's tests.

It speaks the three REST endpoints the plugin uses, with bearer-token auth:
`GET /api/states`, `GET /api/states/<entity_id>` and
`POST /api/services/<domain>/<service>`. State lives in memory; service
calls change it the way Home Assistant does (turn_on/turn_off/toggle, and
`brightness_pct` on lights). Every request is recorded in `calls`.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "secret"


def initial_states() -> dict[str, dict[str, Any]]:
    return {
        "light.kitchen": {
            "state": "on",
            "attributes": {
                "friendly_name": "Kitchen Light",
                "brightness": 255,
                "supported_color_modes": ["brightness"],
                "supported_features": 0,
            },
        },
        "switch.fan": {"state": "on", "attributes": {"friendly_name": "Fan"}},
        "sensor.temperature": {
            "state": "21.5",
            "attributes": {
                "friendly_name": "Temperature",
                "unit_of_measurement": "°C",
                "device_class": "temperature",
            },
        },
    }


@dataclass
class Call:
    method: str
    path: str
    body: Any
    authorization: str


class FakeHass:
    """Start with `FakeHass().start()` (or as a context manager); `url` is its base URL."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.states: dict[str, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.reset()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = raw.decode(errors="replace")
                auth = self.headers.get("authorization", "")
                with fake.lock:
                    fake.calls.append(Call(method, self.path, body, auth))
                    if auth != f"Bearer {fake.token}":
                        # Home Assistant answers a bad token with a plain-text 401.
                        self._send(401, b"401: Unauthorized", "text/plain")
                        return
                    status, reply = fake.route(method, self.path, body)
                self._send(status, json.dumps(reply).encode(), "application/json")

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeHass:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeHass:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Back to the initial entities, with no calls recorded."""
        with self.lock:
            now = _now()
            self.states = {
                eid: {"entity_id": eid, **s, "last_changed": now, "last_updated": now}
                for eid, s in initial_states().items()
            }
            self.calls.clear()

    def service_calls(self) -> list[Call]:
        return [c for c in self.calls if c.path.startswith("/api/services/")]

    # Requests, under the lock.

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.split("?", 1)[0].strip("/").split("/")
        if method == "GET" and parts == ["api"]:
            return 200, {"message": "API running."}
        if method == "GET" and parts == ["api", "states"]:
            return 200, copy.deepcopy(list(self.states.values()))
        if method == "GET" and len(parts) == 3 and parts[:2] == ["api", "states"]:
            state = self.states.get(parts[2])
            if state is None:
                return 404, {"message": "Entity not found."}
            return 200, copy.deepcopy(state)
        if method == "POST" and len(parts) == 4 and parts[:2] == ["api", "services"]:
            return self.service(parts[2], parts[3], body if isinstance(body, dict) else {})
        return 404, {"message": "Not found."}

    def service(self, domain: str, service: str, data: dict[str, Any]) -> tuple[int, Any]:
        if domain not in ("light", "switch", "homeassistant") or service not in (
            "turn_on",
            "turn_off",
            "toggle",
        ):
            return 400, {"message": f"Service {domain}.{service} not found."}
        ids = data.get("entity_id")
        ids = [ids] if isinstance(ids, str) else list(ids or [])
        changed = []
        for eid in ids:
            state = self.states.get(eid)
            # Like Home Assistant, an unknown entity or another domain's entity is skipped.
            if state is None or (domain != "homeassistant" and not eid.startswith(f"{domain}.")):
                continue
            before = copy.deepcopy(state)
            self._apply(state, service, data)
            if state != before:
                state["last_changed"] = state["last_updated"] = _now()
                changed.append(copy.deepcopy(state))
        return 200, changed

    def _apply(self, state: dict[str, Any], service: str, data: dict[str, Any]) -> None:
        is_light = state["entity_id"].startswith("light.")
        attrs = state["attributes"]
        if service == "toggle":
            service = "turn_off" if state["state"] == "on" else "turn_on"
        pct = data.get("brightness_pct")
        if service == "turn_on" and is_light and pct is not None and pct <= 0:
            service = "turn_off"
        if service == "turn_off":
            state["state"] = "off"
            if is_light:
                attrs["brightness"] = None
            return
        state["state"] = "on"
        if is_light:
            if pct is not None:
                attrs["brightness"] = round(pct * 255 / 100)
            elif not attrs.get("brightness"):
                attrs["brightness"] = 255


def _now() -> str:
    return datetime.now(UTC).isoformat()
