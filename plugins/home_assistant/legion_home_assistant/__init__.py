"""Legion plugin: one `home_assistant` tool over the Home Assistant REST API.

The tool is made for small models: one name, one `operation` argument that
accepts the words a model reaches for ("switch off", "dim", "status"...),
entity names resolved when they are unambiguous, and every refusal carrying
a hint that says what to send next. Configuration lives in the
`[plugins.settings.home_assistant]` table of config.toml (see README.md).
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from legion.plugin import Tool, ToolContext, ToolError, hookimpl, tool
from legion_home_assistant.client import HassClient, Settings

__all__ = ["OPERATIONS", "home_assistant", "legion_tools", "normalise_operation"]

__version__ = "0.1.0"

# Each operation and the other words that mean it (compared after normalising:
# lower case, spaces and dashes as underscores).
_ALIASES: dict[str, tuple[str, ...]] = {
    "list_entities": ("list", "ls", "entities", "list_devices", "devices", "list_all", "all",
                      "discover"),
    "get_state": ("get", "state", "status", "read", "show", "check", "query", "get_status",
                  "value", "read_state"),
    "turn_on": ("on", "switch_on", "enable", "activate", "start", "power_on"),
    "turn_off": ("off", "switch_off", "disable", "deactivate", "stop", "power_off", "shut_off"),
    "toggle": ("flip", "switch_over"),
    "set_brightness": ("dim", "brightness", "set_level", "level", "dimmer", "brighten"),
}
OPERATIONS = tuple(_ALIASES)
_BY_ALIAS = {alias: op for op, aliases in _ALIASES.items() for alias in (op, *aliases)}
# "turnon", "switchoff": the same words run together.
_BY_SQUASHED = {alias.replace("_", ""): op for alias, op in _BY_ALIAS.items()}

# Domains whose entities can be read but not switched.
READ_ONLY = frozenset({"sensor", "binary_sensor", "weather", "sun", "zone", "person",
                       "device_tracker", "calendar", "event", "image", "update"})
# Attributes that cost tokens and tell a model nothing.
_NOISE = frozenset({"friendly_name", "supported_features", "supported_color_modes", "icon",
                    "entity_picture", "attribution", "color_mode", "min_color_temp_kelvin",
                    "max_color_temp_kelvin", "min_mireds", "max_mireds", "effect_list"})
LIST_LIMIT = 100
_ENTITY_ID = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
_DOMAIN = re.compile(r"^[a-z0-9_]+$")
_EXAMPLE = '{"operation": "turn_on", "entity_id": "light.kitchen"}'


def normalise_operation(operation: str) -> str:
    """The canonical operation for what a model wrote, or a ToolError listing them."""
    word = re.sub(r"[\s\-]+", "_", operation.strip().lower()).strip("_")
    found = _BY_ALIAS.get(word) or _BY_SQUASHED.get(word.replace("_", ""))
    if found:
        return found
    near = difflib.get_close_matches(word, list(_BY_ALIAS), n=1, cutoff=0.6)
    guess = f"did you mean {_BY_ALIAS[near[0]]}? " if near else ""
    raise ToolError(f"unknown operation {operation!r}; the operations are: "
                    + ", ".join(OPERATIONS),
                    hint=f"{guess}e.g. {_EXAMPLE}, or {{\"operation\": \"list_entities\"}} "
                    "to see the entity ids", kind="bad_arguments")


@tool(keywords=["home assistant", "hass", "smart home", "home automation", "light", "lamp",
                "switch", "plug", "fan", "sensor", "temperature", "brightness", "dim",
                "turn on", "turn off", "toggle", "device", "iot"])
async def home_assistant(operation: str, ctx: ToolContext, entity_id: str | None = None,
                         brightness: int | None = None,
                         domain: str | None = None) -> dict[str, Any]:
    """Home Assistant: list devices, read a state, turn lights and switches on
    or off, toggle them, set a light's brightness (percent).

    operation is one of list_entities (domain filters it, e.g. "light"),
    get_state, turn_on, turn_off, toggle, set_brightness (brightness 0-100);
    common words work too ("list", "status", "on", "switch off", "dim").
    entity_id is an id such as light.kitchen; an exact friendly name
    ("Kitchen Light") is accepted too. For turn_on/turn_off/toggle the
    service domain is the entity id's prefix unless domain is given.

    Examples: {"operation": "list_entities", "domain": "light"};
    {"operation": "get_state", "entity_id": "sensor.temperature"};
    {"operation": "off", "entity_id": "switch.fan"};
    {"operation": "set_brightness", "entity_id": "light.kitchen", "brightness": 30}.
    """
    op = normalise_operation(operation)
    dom = _domain(domain)
    if op == "set_brightness":
        _check_brightness(brightness, required=True)
    elif op == "turn_on" and brightness is not None:
        _check_brightness(brightness, required=False)
    settings = Settings.load(ctx.settings)
    async with HassClient(settings) as client:
        if op == "list_entities":
            return await _list(client, dom)
        # A bare name given to set_brightness most likely means the light of that name.
        within = dom or ("light" if op == "set_brightness" else None)
        state = await _resolve(client, op, entity_id, within)
        if op == "get_state":
            return describe(state)
        return await _switch(client, op, state, dom, brightness)


@hookimpl
def legion_tools() -> list[Tool]:
    return [home_assistant]


def _domain(domain: str | None) -> str | None:
    if domain is None or not domain.strip():
        return None
    dom = domain.strip().lower().rstrip(".")
    if not _DOMAIN.match(dom):
        raise ToolError(f"domain {domain!r} is not a Home Assistant domain",
                        hint="a domain is the part of an entity id before the dot, "
                        "e.g. light, switch, sensor", kind="bad_arguments")
    return dom


def _check_brightness(brightness: int | None, *, required: bool) -> None:
    example = '{"operation": "set_brightness", "entity_id": "light.kitchen", "brightness": 40}'
    if brightness is None:
        if required:
            raise ToolError("set_brightness needs brightness, a percent from 0 to 100",
                            hint=f"e.g. {example}", kind="bad_arguments")
        return
    if not 0 <= brightness <= 100:
        raise ToolError(f"brightness {brightness} is out of range: it is a percent from "
                        "0 (off) to 100 (full)", hint=f"e.g. {example}", kind="bad_arguments")


async def _list(client: HassClient, domain: str | None) -> dict[str, Any]:
    states = sorted(await client.states(), key=lambda s: str(s["entity_id"]))
    counts: dict[str, int] = {}
    for s in states:
        d = _domain_of(s)
        counts[d] = counts.get(d, 0) + 1
    result: dict[str, Any] = {}
    if domain is not None:
        if domain not in counts and domain.endswith("s") and domain[:-1] in counts:
            domain = domain[:-1]  # "lights" -> "light"
        if domain not in counts:
            raise ToolError(f"no entities in domain {domain!r}",
                            hint=f"the domains are: {', '.join(sorted(counts)) or '(none)'}; "
                            "or leave domain out to list everything")
        states = [s for s in states if _domain_of(s) == domain]
        result["domain"] = domain
    result["count"] = len(states)
    result["entities"] = [_brief(s) for s in states[:LIST_LIMIT]]
    if len(states) > LIST_LIMIT:
        result["shown"] = LIST_LIMIT
        result["domains"] = counts
        result["hint"] = "too many to show: filter with domain, e.g. \"light\""
    return result


async def _resolve(client: HassClient, op: str, entity_id: str | None,
                   domain: str | None) -> dict[str, Any]:
    """The state of the entity a model named: an id, or an unambiguous name."""
    if entity_id is None or not entity_id.strip():
        raise ToolError(f"{op} needs entity_id, e.g. light.kitchen",
                        hint=f'e.g. {{"operation": "{op}", "entity_id": "light.kitchen"}}; '
                        'list_entities shows the ids', kind="bad_arguments")
    wanted = entity_id.strip()
    if _ENTITY_ID.match(wanted.lower()):
        state = await client.state(wanted.lower())
        if state is not None:
            return state
    # Not a known id: a friendly name, a bare object id ("kitchen"), or a typo.
    states = await client.states()
    name = wanted.casefold()
    slug = re.sub(r"[^a-z0-9]+", "_", name).strip("_")
    matches = [s for s in states
               if _name(s).casefold() == name or str(s["entity_id"]).split(".", 1)[-1] == slug]
    # domain narrows the matches when it can ("kitchen" + light), never empties them
    # (domain may name a service domain such as "homeassistant").
    narrowed = [s for s in matches if _domain_of(s) == domain]
    if narrowed:
        matches = narrowed
    if len(matches) == 1:
        return matches[0]
    if matches:
        ids = ", ".join(str(s["entity_id"]) for s in matches)
        raise ToolError(f"{wanted!r} could be any of: {ids}",
                        hint="send the exact entity_id")
    near = _near(wanted, states)
    raise ToolError(f"Home Assistant has no entity {wanted!r}",
                    hint=(f"did you mean {' or '.join(near)}? " if near else "")
                    + '{"operation": "list_entities"} shows every entity id')


def _near(wanted: str, states: list[dict[str, Any]]) -> list[str]:
    """Entity ids whose id or friendly name looks like `wanted`."""
    keys: dict[str, str] = {}
    for s in states:
        keys[str(s["entity_id"])] = str(s["entity_id"])
        if _name(s):
            keys.setdefault(_name(s).casefold(), str(s["entity_id"]))
    close = difflib.get_close_matches(wanted.casefold(), list(keys), n=5, cutoff=0.5)
    return list(dict.fromkeys(keys[k] for k in close))[:3]


async def _switch(client: HassClient, op: str, state: dict[str, Any], domain: str | None,
                  brightness: int | None) -> dict[str, Any]:
    entity = str(state["entity_id"])
    own = _domain_of(state)
    if op == "set_brightness":
        if own != "light":
            raise ToolError(f"{entity} is not a light; only lights have a brightness",
                            hint=f'use turn_on or turn_off, e.g. {{"operation": "turn_on", '
                            f'"entity_id": "{entity}"}}')
        service_domain, service = "light", "turn_on"
    else:
        service_domain, service = domain or own, op
    if service_domain in READ_ONLY:
        raise ToolError(f"{entity} is a {service_domain}: it can be read, not switched",
                        hint=f'read it with {{"operation": "get_state", "entity_id": "{entity}"}}')
    data: dict[str, Any] = {"entity_id": entity}
    if brightness is not None and service == "turn_on" and own == "light":
        data["brightness_pct"] = brightness
    await client.call_service(service_domain, service, data)
    # The service's answer lists only states that changed; read the entity back instead.
    after = await client.state(entity) or state
    result = {"entity_id": entity, "service": f"{service_domain}.{service}",
              "before": state.get("state"), "state": after.get("state")}
    pct = _brightness_pct(after)
    if pct is not None:
        result["brightness_pct"] = pct
    return result


def describe(state: dict[str, Any]) -> dict[str, Any]:
    """One entity's state, without the attributes that only cost tokens."""
    attributes = state.get("attributes") or {}
    result = _brief(state)
    pct = _brightness_pct(state)
    if pct is not None:
        result["brightness_pct"] = pct
    extra = {k: v for k, v in attributes.items() if k not in _NOISE and v is not None}
    if pct is not None:
        extra.pop("brightness", None)  # 0-255; brightness_pct says it in the tool's unit
    if extra:
        result["attributes"] = extra
    if state.get("last_changed"):
        result["last_changed"] = state["last_changed"]
    return result


def _brief(state: dict[str, Any]) -> dict[str, Any]:
    brief: dict[str, Any] = {"entity_id": state["entity_id"], "state": state.get("state")}
    if _name(state):
        brief["friendly_name"] = _name(state)
    return brief


def _name(state: dict[str, Any]) -> str:
    return str((state.get("attributes") or {}).get("friendly_name") or "")


def _domain_of(state: dict[str, Any]) -> str:
    return str(state["entity_id"]).split(".", 1)[0]


def _brightness_pct(state: dict[str, Any]) -> int | None:
    raw = (state.get("attributes") or {}).get("brightness")
    if _domain_of(state) != "light" or not isinstance(raw, int | float):
        return None
    return round(raw * 100 / 255)
