"""The plugin manager: load built-in and installed plugins, collect what they add.

Built-ins (starter tools, watcher kinds) are registered first, through the
same hooks as third parties. Installed plugins are found through the
`legion.plugins` entry-point group. Each plugin is loaded, and each of its
hooks called, on its own: one that fails to import or raises is recorded as
failed, with the error, and skipped. A broken plugin must never cost the
user the daemon.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy
import structlog

from legion import plugin as api
from legion.tool import Tool

log = structlog.get_logger("legion.plugins")

BUILTINS = {
    "starter": "legion.daemon.tools.starter",
    "watchers": "legion.daemon.watchers.kinds",
}


@dataclass
class PluginInfo:
    name: str
    source: str  # "builtin", or the distribution "name version"
    module: str
    status: str = "loaded"  # loaded | failed | disabled
    error: str | None = None
    tools: list[str] = field(default_factory=list)
    watcher_kinds: list[str] = field(default_factory=list)
    providers: list[str] = field(default_factory=list)
    rpc_methods: list[str] = field(default_factory=list)
    transports: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "module": self.module,
            "status": self.status,
            "error": self.error,
            "tools": self.tools,
            "watcher_kinds": self.watcher_kinds,
            "providers": self.providers,
            "rpc_methods": self.rpc_methods,
            "transports": self.transports,
        }


@dataclass
class Contributions:
    """What every loaded plugin adds, each item tagged with its plugin."""

    tools: list[tuple[str, Tool]] = field(default_factory=list)
    watcher_kinds: dict[str, api.WatcherKind] = field(default_factory=dict)
    providers: dict[str, Any] = field(default_factory=dict)
    rpc_methods: list[tuple[str, api.RpcMethod]] = field(default_factory=list)
    transports: list[tuple[str, Any]] = field(default_factory=list)


class Plugins:
    def __init__(
        self,
        disabled: list[str] | None = None,
        *,
        reserved_tools: set[str] | None = None,
        reserved_kinds: set[str] | None = None,
        reserved_providers: set[str] | None = None,
    ) -> None:
        self.disabled = set(disabled or [])
        # Names the daemon itself owns: a plugin may not take them over.
        self.reserved_tools = set(reserved_tools or ())
        self.reserved_kinds = set(reserved_kinds or ())
        self.reserved_providers = set(reserved_providers or ())
        self.pm = pluggy.PluginManager(api.PROJECT)
        self.pm.add_hookspecs(api.Specs)
        self.info: dict[str, PluginInfo] = {}
        self.contributions = Contributions()

    def load(self) -> Contributions:
        for name, module in BUILTINS.items():
            self._load(name, "builtin", module, lambda m=module: importlib.import_module(m))
        for ep in _entry_points():
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "unknown"
            if ep.name in self.info:
                self.info[f"{ep.name} ({dist})"] = PluginInfo(
                    ep.name,
                    dist,
                    ep.value,
                    "failed",
                    f"another plugin is already named {ep.name!r}; rename one entry point",
                )
                continue
            self._load(ep.name, dist, ep.value, ep.load)
        return self.contributions

    def _load(self, name: str, source: str, module: str, loader: Any) -> None:
        info = PluginInfo(name, source, module)
        self.info[name] = info
        if name in self.disabled:
            info.status = "disabled"
            return
        try:
            obj = loader()
            self.pm.register(obj, name=name)
        except Exception as exc:  # a plugin's bug is reported, never fatal
            info.status, info.error = "failed", f"{type(exc).__name__}: {exc}"
            log.error(
                "plugin failed to load; skipped", plugin=name, source=source, error=info.error
            )
            return
        try:
            # A misspelt hook would otherwise be silently ignored.
            self.pm.check_pending()
            self._collect(name, obj, info)
        except Exception as exc:
            self.pm.unregister(name=name)
            info.status, info.error = "failed", f"{type(exc).__name__}: {exc}"
            log.error("plugin hook failed; plugin skipped", plugin=name, error=info.error)

    def _collect(self, name: str, obj: Any, info: PluginInfo) -> None:
        # Each plugin's hooks are called on their own, so a failure is pinned to it
        # and nothing it returned is half-kept.
        c = Contributions()
        for t in self._call(obj, "legion_tools") or []:
            if not isinstance(t, Tool):
                raise TypeError(
                    f"legion_tools returned {type(t).__name__}; decorate the function with @tool"
                )
            c.tools.append((name, t))
        for k in self._call(obj, "legion_watcher_kinds") or []:
            c.watcher_kinds[k.name] = k
        c.providers.update(self._call(obj, "legion_model_providers") or {})
        for m in self._call(obj, "legion_rpc_methods") or []:
            if not m.name.startswith(f"{name}."):
                raise ValueError(f"RPC method {m.name!r} must be named {name}.METHOD")
            c.rpc_methods.append((name, m))
        c.transports.extend((name, t) for t in self._call(obj, "legion_transports") or [])
        c_ = self.contributions
        for what, mine, theirs in (
            (
                "tool",
                {t.name for _, t in c.tools},
                {t.name for _, t in c_.tools} | self.reserved_tools,
            ),
            ("watcher kind", set(c.watcher_kinds), set(c_.watcher_kinds) | self.reserved_kinds),
            ("model provider", set(c.providers), set(c_.providers) | self.reserved_providers),
        ):
            taken = mine & theirs
            if taken:
                raise ValueError(
                    f"{what} names already taken (by Legion or another plugin): "
                    f"{', '.join(sorted(taken))}; rename them in the plugin"
                )
        self.contributions.tools += c.tools
        self.contributions.watcher_kinds.update(c.watcher_kinds)
        self.contributions.providers.update(c.providers)
        self.contributions.rpc_methods += c.rpc_methods
        self.contributions.transports += c.transports
        info.tools = [t.name for _, t in c.tools]
        info.watcher_kinds = list(c.watcher_kinds)
        info.providers = list(c.providers)
        info.rpc_methods = [m.name for _, m in c.rpc_methods]
        info.transports = len(c.transports)

    def listing(self) -> list[dict[str, Any]]:
        return [i.as_dict() for i in self.info.values()]

    def _call(self, obj: Any, hook: str) -> Any:
        caller = getattr(self.pm.hook, hook)
        for impl in caller.get_hookimpls():
            if impl.plugin is obj:
                return impl.function()
        return None


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=api.ENTRY_POINT_GROUP), key=lambda e: e.name)
