"""Repair of tool calls that a model wrote as JSON text instead of `tool_calls`.

Models served by Ollama and other local servers often answer a tool-using
prompt with the call as bare JSON in the content ("{"name": "now",
"arguments": {}}"), sometimes inside a ```json fence. When the whole answer is
such a call (or a list of them) and every name is a tool the agent has, it is
turned into real tool calls; anything else is left as prose.
"""

from __future__ import annotations

import json
import re
from typing import Any

from legion.daemon.llm.types import ToolCall

_FENCE = re.compile(r"^```(?:json|tool_call|tool)?\s*(.*?)\s*```$", re.S)
_TAGS = re.compile(r"^<tool_call>\s*(.*?)\s*</tool_call>$", re.S)


def repair(text: str, tool_names: set[str]) -> list[ToolCall] | None:
    body = text.strip()
    for pattern in (_FENCE, _TAGS):
        m = pattern.match(body)
        if m:
            body = m.group(1).strip()
    if not body or body[0] not in "[{":
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("tool_calls"), list):
        data = data["tool_calls"]
    items = data if isinstance(data, list) else [data]
    calls: list[ToolCall] = []
    for n, item in enumerate(items):
        call = _one(item, n)
        if call is None or call.name not in tool_names:
            return None
        calls.append(call)
    return calls or None


def _one(item: Any, n: int) -> ToolCall | None:
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("function"), dict):
        item = item["function"]
    name = item.get("name") or item.get("tool") or item.get("tool_name")
    if not isinstance(name, str):
        return None
    keys = ("arguments", "parameters", "args", "input")
    args: Any = next((item[k] for k in keys if k in item), {})
    if isinstance(args, str):
        raw = args
    elif isinstance(args, dict):
        raw = json.dumps(args)
    else:
        return None
    return ToolCall(id=f"repaired_{n}", name=name, arguments=raw)
