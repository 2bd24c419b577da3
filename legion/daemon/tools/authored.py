"""Agent-written tools: write, read, edit, build, and call them in the sandbox.

A tool is Python source with one entry function (named like the tool, or the
only public function). Every write or edit is built at once: parsed, imported
in the sandbox, its schema derived from the entry function's signature, and
its optional self-test (a function named `test`) run. The outcome is a
`tool.built` event; an edit also emits `tool.edited` with the before/after
content hashes and a unified diff. A tool whose build fails is still saved,
as `broken`, so it can be fixed with an edit instead of being sent again.

Edits are exact: STRING replaces one unique occurrence; RANGE and INSERT
work on line numbers and must name the content hash they were computed
against, so an edit based on a stale read is refused rather than misapplied.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from legion.config import ToolsConfig
from legion.daemon.events import Event, EventBus, insert, now_iso
from legion.daemon.store.database import Store
from legion.daemon.tools.sandbox import Sandbox
from legion.errors import Conflict, InvalidParams, NotFound, PermissionDenied, close_matches

NAME = re.compile(r"^[a-z][a-z0-9_]{1,47}$")
PY_TYPES = {
    "integer": "int",
    "string": "str",
    "number": "float",
    "boolean": "bool",
    "array": "list",
    "object": "dict",
    "null": "None",
}
DIFF_LIMIT = 20_000


def content_hash(source: str) -> str:
    return "sha256:" + hashlib.sha256(source.encode()).hexdigest()[:16]


def numbered(source: str, start: int = 1, end: int | None = None) -> str:
    """`cat -n` style: the numbers tool_edit's RANGE and INSERT modes take."""
    lines = source.splitlines()
    end = len(lines) if end is None else min(end, len(lines))
    return "\n".join(f"{i:6}\t{lines[i - 1]}" for i in range(max(1, start), end + 1))


@dataclass
class Authored:
    """One agent-written tool as stored."""

    name: str
    author: str
    maintainer: str
    description: str
    keywords: list[str]
    source: str
    entry: str
    content_hash: str
    version: int
    status: str
    problem: str | None
    schema: dict[str, Any]
    network: bool
    env: list[str]
    timeout: float | None
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, r: Any) -> Authored:
        return cls(
            r["name"],
            r["author"],
            r["maintainer"],
            r["description"],
            json.loads(r["keywords"]),
            r["source"],
            r["entry"],
            r["content_hash"],
            r["version"],
            r["status"],
            r["problem"],
            json.loads(r["schema"]),
            bool(r["network"]),
            json.loads(r["env"]),
            r["timeout"],
            r["created_at"],
            r["updated_at"],
        )

    def signature(self) -> str:
        """Like a Python signature (as built-in tools show theirs), from the schema."""
        props = self.schema.get("properties", {})
        required = set(self.schema.get("required", []))
        parts = []
        for pname, spec in props.items():
            t = PY_TYPES.get(spec.get("type", "any"), "any")
            if t == "list":
                t = f"list[{PY_TYPES.get(spec.get('items', {}).get('type', 'any'), 'any')}]"
            parts.append(
                pname
                + f": {t}"
                + ("" if pname in required else f" = {json.dumps(spec.get('default'))}")
            )
        return f"{self.name}({', '.join(parts)})"


class AuthoredTools:
    def __init__(self, store: Store, bus: EventBus, sandbox: Sandbox, cfg: ToolsConfig) -> None:
        self.store = store
        self.bus = bus
        self.sandbox = sandbox
        self.cfg = cfg
        self.tools: dict[str, Authored] = {}
        # Names taken by kernel, builtin, starter and plugin tools.
        self.reserved: set[str] = set()
        # The latest edits per tool, newest first (loaded from tool_versions).
        self._recent: dict[str, list[dict[str, Any]]] = {}

    async def load(self) -> None:
        for r in await self.store.fetchall("SELECT * FROM tools"):
            t = Authored.from_row(r)
            self.tools[t.name] = t
        for r in await self.store.fetchall(
            "SELECT name, version, mode, agent, added, removed, at FROM tool_versions"
            " ORDER BY name, version DESC"
        ):
            edits = self._recent.setdefault(r["name"], [])
            if len(edits) < 5:
                edits.append(
                    {k: r[k] for k in ("version", "mode", "agent", "added", "removed", "at")}
                )

    def get(self, name: str) -> Authored:
        t = self.tools.get(name)
        if t is None:
            near = close_matches(name, list(self.tools))
            raise NotFound(
                f"there is no agent-written tool named {name!r}",
                hint=("did you mean " + ", ".join(near) + "? " if near else "")
                + "tool_search lists every tool; tool_write creates one",
                candidates=near,
                kind="unknown_tool",
            )
        return t

    # -- write ------------------------------------------------------------------------

    async def write(
        self,
        agent: str,
        name: str,
        source: str,
        *,
        description: str = "",
        keywords: list[str] | None = None,
        network: bool | None = None,
        env: list[str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
        caused_by: int | None = None,
    ) -> dict[str, Any]:
        # Where only the weak sandbox exists (and nobody opted in), agent-written
        # code is refused before anything is saved, with what to do about it.
        self.sandbox.require_strong()
        if not NAME.match(name):
            raise InvalidParams(
                f"invalid tool name {name!r}",
                hint="use 2-48 lowercase letters, digits and _, starting with a "
                "letter, e.g. parse_invoice",
            )
        if name in self.reserved:
            raise Conflict(
                f"{name!r} is a built-in tool and cannot be replaced",
                hint="choose another name",
                kind="name_taken",
            )
        old = self.tools.get(name)
        if old is not None:
            self._check_maintainer(old, agent)
        else:
            mine = sum(1 for t in self.tools.values() if t.maintainer == agent)
            if mine >= self.cfg.max_per_agent:
                raise Conflict(
                    f"you maintain {mine} tools, the most allowed "
                    f"(tools.max_per_agent = {self.cfg.max_per_agent})",
                    hint="delete one you no longer need with tool_delete, or "
                    "improve an existing one with tool_edit",
                    kind="too_many_tools",
                )
        meta: dict[str, Any] = {
            "description": description,
            "keywords": [k.lower() for k in keywords or []],
            "network": bool(network),
            "env": list(env or []),
            "timeout": timeout,
        }
        if old is not None:
            # A replacement keeps what it does not restate.
            meta["description"] = description or old.description
            meta["keywords"] = meta["keywords"] if keywords is not None else old.keywords
            meta["network"] = old.network if network is None else network
            meta["env"] = old.env if env is None else list(env)
            meta["timeout"] = old.timeout if timeout is None else timeout
        return await self._save(agent, name, source, "write", meta, old, caused_by)

    # -- read -------------------------------------------------------------------------

    def read(
        self, name: str, start_line: int | None = None, end_line: int | None = None
    ) -> dict[str, Any]:
        t = self.get(name)
        lines = t.source.splitlines()
        start = start_line or 1
        end = end_line or len(lines)
        if start < 1 or end < start:
            raise InvalidParams(
                f"bad line range {start}..{end}",
                hint=f"lines run from 1 to {len(lines)}; start_line <= end_line",
            )
        return {
            "name": t.name,
            "description": t.description,
            "keywords": t.keywords,
            "author": t.author,
            "maintainer": t.maintainer,
            "status": t.status,
            "problem": t.problem,
            "version": t.version,
            "content_hash": t.content_hash,
            "signature": t.signature(),
            "network": t.network,
            "env": t.env,
            "total_lines": len(lines),
            "start_line": start,
            "end_line": min(end, len(lines)),
            "source": numbered(t.source, start, end),
            "recent_edits": self._recent.get(name, []),
        }

    async def versions(self, name: str, limit: int = 5) -> list[dict[str, Any]]:
        rows = await self.store.fetchall(
            "SELECT version, content_hash, mode, agent, added, removed, at FROM tool_versions"
            " WHERE name = ? ORDER BY version DESC LIMIT ?",
            (name, limit),
        )
        return [dict(r) for r in rows]

    # -- edit -------------------------------------------------------------------------

    async def edit(
        self,
        agent: str,
        name: str,
        *,
        mode: str | None = None,
        old_string: str | None = None,
        new_string: str | None = None,
        start_line: int | None = None,
        end_line: int | None = None,
        new_text: str | None = None,
        insert_at_line: int | None = None,
        expected_content_hash: str | None = None,
        caused_by: int | None = None,
    ) -> dict[str, Any]:
        self.sandbox.require_strong()
        t = self.get(name)
        self._check_maintainer(t, agent)
        mode = (mode or _infer_mode(old_string, start_line, insert_at_line)).lower()
        src = t.source
        if mode == "string":
            if old_string is None or new_string is None:
                raise InvalidParams(
                    "STRING mode needs old_string and new_string",
                    hint='e.g. {"mode": "string", "old_string": "x + 1", "new_string": "x + 2"}',
                )
            count = src.count(old_string) if old_string else 0
            if count != 1:
                raise InvalidParams(
                    f"old_string occurs {count} times in {name}; it must occur exactly once",
                    hint=(
                        "include more surrounding lines to make it unique"
                        if count
                        else "copy it exactly from tool_read (without the line numbers), or "
                        "use RANGE mode with start_line/end_line"
                    ),
                    kind="no_unique_match",
                )
            new = src.replace(old_string, new_string, 1)
        elif mode in ("range", "insert"):
            self._check_hash(t, expected_content_hash)
            lines = src.splitlines(keepends=True)
            text = new_text if new_text is not None else ""
            if text and not text.endswith("\n"):
                text += "\n"
            if mode == "range":
                if start_line is None or end_line is None:
                    raise InvalidParams(
                        "RANGE mode needs start_line, end_line and new_text",
                        hint=f"lines run from 1 to {len(lines)}",
                    )
                if not 1 <= start_line <= end_line <= len(lines):
                    raise InvalidParams(
                        f"lines {start_line}..{end_line} are outside the tool's 1..{len(lines)}",
                        hint="read the tool again with tool_read",
                    )
                new = "".join(lines[: start_line - 1]) + text + "".join(lines[end_line:])
            else:
                if insert_at_line is None or new_text is None:
                    raise InvalidParams(
                        "INSERT mode needs insert_at_line and new_text",
                        hint=f"the text goes before that line; {len(lines) + 1} appends at the end",
                    )
                if not 1 <= insert_at_line <= len(lines) + 1:
                    raise InvalidParams(
                        f"insert_at_line {insert_at_line} is outside 1..{len(lines) + 1}",
                        hint=f"{len(lines) + 1} appends at the end",
                    )
                if lines and not lines[-1].endswith("\n"):
                    lines[-1] += "\n"
                new = (
                    "".join(lines[: insert_at_line - 1])
                    + text
                    + "".join(lines[insert_at_line - 1 :])
                )
        else:
            raise InvalidParams(
                f"unknown edit mode {mode!r}",
                hint="use string (old_string/new_string), range "
                "(start_line/end_line/new_text) or insert "
                "(insert_at_line/new_text)",
            )
        if new == src:
            raise InvalidParams("the edit changes nothing", hint="check new_string / new_text")
        meta = {
            "description": t.description,
            "keywords": t.keywords,
            "network": t.network,
            "env": t.env,
            "timeout": t.timeout,
        }
        return await self._save(agent, name, new, mode, meta, t, caused_by)

    def _check_hash(self, t: Authored, expected: str | None) -> None:
        if not expected:
            raise InvalidParams(
                "expected_content_hash is required for RANGE and INSERT edits",
                hint=f"pass the content_hash from tool_read (now {t.content_hash})",
            )
        if expected != t.content_hash:
            raise Conflict(
                f"{t.name} changed since you read it (expected {expected}, it is now "
                f"{t.content_hash}); the edit was not applied",
                hint="read it again with tool_read and redo the edit on the current lines",
                kind="stale_hash",
                data={"content_hash": t.content_hash},
            )

    def _check_maintainer(self, t: Authored, agent: str) -> None:
        if agent not in (t.author, t.maintainer):
            raise PermissionDenied(
                f"{t.name} is maintained by {t.maintainer}; only its maintainer may change it",
                hint=f"ask {t.maintainer} for the change, or write your own tool under a new name",
            )

    # -- delete -----------------------------------------------------------------------

    async def delete(
        self, agent: str | None, name: str, *, source: str, caused_by: int | None = None
    ) -> dict[str, Any]:
        """Remove a tool and its versions. An agent may delete only what it
        maintains; a person (agent None, over RPC) may delete any."""
        t = self.get(name)
        if agent is not None:
            self._check_maintainer(t, agent)

        def job(db: Any) -> Event:
            db.execute("DELETE FROM tools WHERE name = ?", (name,))
            db.execute("DELETE FROM tool_versions WHERE name = ?", (name,))
            return insert(
                db,
                agent,
                "tool.deleted",
                {
                    "name": name,
                    "version": t.version,
                    "content_hash": t.content_hash,
                    "maintainer": t.maintainer,
                },
                caused_by=caused_by,
                source=source,
            )

        ev = await self.store.writer.run(job, on_commit=self.bus.deliver)
        self.tools.pop(name, None)
        self._recent.pop(name, None)
        return {"deleted": name, "version": t.version, "event": ev.id}

    # -- build and save ---------------------------------------------------------------

    async def _save(
        self,
        agent: str,
        name: str,
        source: str,
        mode: str,
        meta: dict[str, Any],
        old: Authored | None,
        caused_by: int | None,
    ) -> dict[str, Any]:
        if len(source.encode()) > self.cfg.max_source_bytes:
            raise InvalidParams(
                f"the source is {len(source.encode())} bytes; the limit is "
                f"{self.cfg.max_source_bytes}",
                hint="split it into smaller tools",
            )
        build = await self.build(name, source, agent, meta)
        h = content_hash(source)
        before = old.source if old else ""
        diff_lines = list(
            difflib.unified_diff(
                before.splitlines(),
                source.splitlines(),
                f"{name} {old.content_hash if old else ''}",
                f"{name} {h}",
                lineterm="",
                n=2,
            )
        )
        added = sum(1 for ln in diff_lines if ln.startswith("+") and not ln.startswith("+++"))
        removed = sum(1 for ln in diff_lines if ln.startswith("-") and not ln.startswith("---"))
        diff = "\n".join(diff_lines)[:DIFF_LIMIT]
        now = now_iso()
        version = (old.version + 1) if old else 1
        description = (
            meta["description"]
            or build.get("doc", "").split("\n\n")[0]
            or (old.description if old else "")
        ).replace("\n", " ")[:500]
        t = Authored(
            name,
            old.author if old else agent,
            old.maintainer if old else agent,
            description,
            meta["keywords"],
            source,
            build["entry"],
            h,
            version,
            "ok" if build["ok"] else "broken",
            build.get("problem"),
            build.get("schema") or (old.schema if old else {}),
            meta["network"],
            meta["env"],
            meta["timeout"],
            old.created_at if old else now,
            now,
        )
        source_tag = f"agent:{agent}"
        keep = self.cfg.versions_keep

        def job(db: Any) -> list[Event]:
            db.execute(
                "INSERT INTO tools (name, author, maintainer, description, keywords, source,"
                " entry, content_hash, version, status, problem, schema, network, env, timeout,"
                " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (name) DO UPDATE SET description = excluded.description,"
                " keywords = excluded.keywords, source = excluded.source,"
                " entry = excluded.entry, content_hash = excluded.content_hash,"
                " version = excluded.version, status = excluded.status,"
                " problem = excluded.problem, schema = excluded.schema,"
                " network = excluded.network, env = excluded.env, timeout = excluded.timeout,"
                " updated_at = excluded.updated_at",
                (
                    t.name,
                    t.author,
                    t.maintainer,
                    t.description,
                    json.dumps(t.keywords),
                    t.source,
                    t.entry,
                    t.content_hash,
                    t.version,
                    t.status,
                    t.problem,
                    json.dumps(t.schema),
                    int(t.network),
                    json.dumps(t.env),
                    t.timeout,
                    t.created_at,
                    t.updated_at,
                ),
            )
            db.execute(
                "INSERT INTO tool_versions (name, version, content_hash, source, diff, added,"
                " removed, mode, agent, at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (name, version, h, source, diff, added, removed, mode, agent, now),
            )
            db.execute(
                "DELETE FROM tool_versions WHERE name = ? AND version <= ?", (name, version - keep)
            )
            events = []
            owner = agent
            if old is not None:
                events.append(
                    insert(
                        db,
                        owner,
                        "tool.edited",
                        {
                            "name": name,
                            "mode": mode,
                            "version": version,
                            "before_hash": old.content_hash,
                            "after_hash": h,
                            "diff": diff,
                            "added": added,
                            "removed": removed,
                        },
                        caused_by=caused_by,
                        source=source_tag,
                    )
                )
            events.append(
                insert(
                    db,
                    owner,
                    "tool.built",
                    {
                        "name": name,
                        "version": version,
                        "content_hash": h,
                        "ok": build["ok"],
                        "status": t.status,
                        "selftest": build.get("selftest", "none"),
                        "problem": build.get("problem"),
                        "created": old is None,
                    },
                    caused_by=caused_by,
                    source=source_tag,
                )
            )
            return events

        await self.store.writer.run(job, on_commit=self.bus.deliver)
        self.tools[name] = t
        self._recent.setdefault(name, []).insert(
            0,
            {
                "version": version,
                "mode": mode,
                "agent": agent,
                "added": added,
                "removed": removed,
                "at": now,
            },
        )
        del self._recent[name][5:]
        out: dict[str, Any] = {
            "name": name,
            "version": version,
            "content_hash": h,
            "status": t.status,
            "built": build["ok"],
            "selftest": build.get("selftest", "none"),
            "total_lines": len(source.splitlines()),
            "signature": t.signature(),
            "added": added,
            "removed": removed,
        }
        blocked = [v for v in t.env if v not in self.sandbox.cfg.env_allow]
        if blocked:
            out["env_blocked"] = blocked
            out["env_note"] = (
                "these variables will not reach the tool until a person adds "
                "them to tools.sandbox.env_allow in config.toml"
            )
        if not build["ok"]:
            out["problem"] = build.get("problem")
            out["hint"] = build.get("hint") or (
                "fix it with tool_edit (tool_read shows the numbered source); it cannot be "
                "called until it builds"
            )
        return out

    async def build(
        self, name: str, source: str, agent: str, meta: dict[str, Any]
    ) -> dict[str, Any]:
        """Parse, find the entry function, then import, type and self-test in the sandbox."""
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            line = (exc.text or "").rstrip("\n")
            return {
                "ok": False,
                "entry": name,
                "problem": f"syntax error at line {exc.lineno}, column {exc.offset}: "
                f"{exc.msg}" + (f": {line.strip()}" if line else ""),
                "hint": "fix that line with tool_edit",
            }
        funcs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        public = [f for f in funcs if not f.startswith("_") and f != "test"]
        if name in funcs:
            entry = name
        elif len(public) == 1:
            entry = public[0]
        else:
            return {
                "ok": False,
                "entry": name,
                "problem": f"no entry function: define `def {name}(...)`"
                + (f" (found {', '.join(public)})" if public else ""),
                "hint": f"name the function the tool runs {name}; helpers start with _",
            }
        res = await self.sandbox.run_tool(
            "build",
            name=name,
            source=source,
            entry=entry,
            agent=agent,
            network=meta["network"],
            env=meta["env"],
            time_limit=meta["timeout"],
        )
        if not res.get("ok"):
            problem = res.get("error", "the build failed")
            if res.get("traceback"):
                problem += f" ({res['traceback']})"
            return {
                "ok": False,
                "entry": entry,
                "problem": problem,
                "hint": res.get("hint"),
                "selftest": res.get("selftest", "none"),
                "schema": res.get("schema"),
                "doc": res.get("doc", ""),
            }
        return {
            "ok": True,
            "entry": entry,
            "schema": res["schema"],
            "doc": res.get("doc", ""),
            "selftest": res.get("selftest", "none"),
        }

    async def call(
        self, t: Authored, args: dict[str, Any], agent: str | None, time_limit: float | None
    ) -> dict[str, Any]:
        self.sandbox.require_strong()
        limits = [x for x in (t.timeout, time_limit) if x]
        limit = min(limits) if limits else None
        return await self.sandbox.run_tool(
            "call",
            name=t.name,
            source=t.source,
            entry=t.entry,
            agent=agent,
            args=args,
            network=t.network,
            env=t.env,
            time_limit=limit,
        )


def _infer_mode(old_string: str | None, start_line: int | None, insert_at_line: int | None) -> str:
    if old_string is not None:
        return "string"
    if insert_at_line is not None:
        return "insert"
    if start_line is not None:
        return "range"
    raise InvalidParams(
        "say what to change",
        hint="STRING: old_string + new_string; RANGE: start_line + end_line + "
        "new_text + expected_content_hash; INSERT: insert_at_line + "
        "new_text + expected_content_hash",
    )
