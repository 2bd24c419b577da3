"""A small async client for the Home Assistant REST API.

Only the three endpoints the tool needs: `GET /api/states`,
`GET /api/states/<entity_id>` and `POST /api/services/<domain>/<service>`.
Every failure becomes a ToolError whose hint says what to do next: a model
reads it, and so does the person who set the plugin up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from legion.plugin import ToolError

TABLE = "[plugins.settings.home_assistant]"
DEFAULT_TIMEOUT = 10.0
# Ends the hint of every setup problem: the model cannot fix those by retrying.
OPERATOR = "this is a setup problem for the operator, retrying will not help"


@dataclass(frozen=True)
class Settings:
    """Where Home Assistant is and how to authenticate to it."""

    url: str
    token: str
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def load(cls, settings: Mapping[str, Any],
             environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from the plugin's config table, falling back to HASS_URL / HASS_TOKEN."""
        env = os.environ if environ is None else environ
        url = str(settings.get("url") or env.get("HASS_URL") or "").strip()
        token = str(settings.get("token") or env.get("HASS_TOKEN") or "").strip()
        missing = [key for key, value in (("url", url), ("token", token)) if not value]
        if missing:
            keys = " and ".join(f"`{key}`" for key in missing)
            example = {"url": 'url = "http://homeassistant.local:8123"',
                       "token": 'token = "${HASS_TOKEN}"'}
            raise ToolError(
                f"Home Assistant is not configured: set {keys} under {TABLE} in config.toml "
                f"(or {' / '.join('HASS_' + key.upper() for key in missing)} in the daemon's "
                "environment)",
                hint=f"add to config.toml: {TABLE} "
                + "; ".join(example[key] for key in missing)
                + f", then restart the daemon; {OPERATOR}",
            )
        try:
            timeout = float(settings.get("timeout", DEFAULT_TIMEOUT))
        except (TypeError, ValueError):
            raise ToolError(f"`timeout` under {TABLE} must be a number of seconds, "
                            f"not {settings.get('timeout')!r}",
                            hint=f"e.g. timeout = 10; {OPERATOR}") from None
        return cls(_base_url(url), token, timeout)


def _base_url(url: str) -> str:
    # Forgive the two usual slips: a missing scheme and a trailing /api.
    if "://" not in url:
        url = f"http://{url}"
    url = url.rstrip("/")
    return url.removesuffix("/api")


class HassClient:
    """One conversation with Home Assistant (use as `async with`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._http = httpx.AsyncClient(
            base_url=settings.url, timeout=settings.timeout,
            headers={"Authorization": f"Bearer {settings.token}",
                     "Content-Type": "application/json"})

    async def __aenter__(self) -> HassClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._http.aclose()

    async def states(self) -> list[dict[str, Any]]:
        """Every entity's state."""
        reply = await self._request("GET", "/api/states")
        data = _json(reply)
        if not isinstance(data, list):
            raise ToolError("Home Assistant sent an unexpected answer to GET /api/states",
                            hint="check that `url` points at Home Assistant itself")
        return [s for s in data if isinstance(s, dict) and "entity_id" in s]

    async def state(self, entity_id: str) -> dict[str, Any] | None:
        """One entity's state, or None when Home Assistant has no such entity."""
        reply = await self._request("GET", f"/api/states/{quote(entity_id, safe='.')}",
                                    missing_ok=True)
        if reply.status_code == 404:
            return None
        data = _json(reply)
        return data if isinstance(data, dict) else None

    async def call_service(self, domain: str, service: str,
                           data: dict[str, Any]) -> list[dict[str, Any]]:
        """Call `domain.service`; returns the states it changed."""
        path = f"/api/services/{quote(domain, safe='')}/{quote(service, safe='')}"
        reply = await self._request("POST", path, json=data, missing_ok=True)
        if reply.status_code in (400, 404):
            detail = _message(reply)
            raise ToolError(
                f"Home Assistant refused {domain}.{service} for {data.get('entity_id')}"
                + (f": {detail}" if detail else ""),
                hint="check with get_state that the entity supports it; for another service "
                "domain pass domain (e.g. domain=\"homeassistant\" works for most entities)")
        changed = _json(reply)
        return changed if isinstance(changed, list) else []

    async def _request(self, method: str, path: str, *, json: Any = None,
                       missing_ok: bool = False) -> httpx.Response:
        url = self.settings.url
        try:
            reply = await self._http.request(method, path, json=json)
        except httpx.TimeoutException:
            raise ToolError(f"Home Assistant at {url} did not answer within "
                            f"{self.settings.timeout:g}s",
                            hint="it may be busy or unreachable; try again later") from None
        except httpx.ConnectError as exc:
            raise ToolError(f"cannot reach Home Assistant at {url}: {exc or 'connection failed'}",
                            hint="Home Assistant is down, restarting, or not at this address: "
                            "try once more later; if it still fails, tell the operator to check "
                            f"that it runs and that `url` under {TABLE} is right") from None
        except httpx.HTTPError as exc:
            raise ToolError(f"request to Home Assistant at {url} failed: {exc}",
                            hint=f"check `url` under {TABLE}; {OPERATOR}") from None
        if reply.status_code == 401:
            raise ToolError(
                "Home Assistant rejected the token (HTTP 401 Unauthorized)",
                hint=f"`token` under {TABLE} (or HASS_TOKEN) is wrong or revoked: create a "
                "long-lived access token in Home Assistant (Profile > Security), set it, and "
                f"restart the daemon; {OPERATOR}")
        if reply.status_code == 403:
            raise ToolError("Home Assistant refused access (HTTP 403 Forbidden)",
                            hint="the token's user may lack the rights, or this host's IP "
                            f"was banned after failed logins; {OPERATOR}")
        if missing_ok and reply.status_code in (400, 404):
            return reply
        if reply.status_code >= 400:
            detail = _message(reply)
            hint = ("try again later; if it persists, check Home Assistant's log"
                    if reply.status_code >= 500 else
                    f"check that `url` under {TABLE} points at Home Assistant itself; {OPERATOR}")
            raise ToolError(f"Home Assistant answered HTTP {reply.status_code} to {method} {path}"
                            + (f": {detail}" if detail else ""), hint=hint)
        return reply


def _json(reply: httpx.Response) -> Any:
    try:
        return reply.json()
    except ValueError:
        raise ToolError(f"Home Assistant sent a reply that is not JSON "
                        f"(HTTP {reply.status_code}, {reply.text[:80]!r})",
                        hint=f"check that `url` under {TABLE} points at Home Assistant itself"
                        ) from None


def _message(reply: httpx.Response) -> str:
    """The `message` of an error reply, or its text, kept short."""
    try:
        data = reply.json()
    except ValueError:
        return reply.text.strip()[:200]
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])[:200]
    return ""
