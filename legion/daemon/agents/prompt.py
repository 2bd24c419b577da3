"""What the model is shown: system prompt, protocol, recent history, the message.

Token counts are estimated at four characters a token: exact counting would
mean a tokenizer per model (and, for many, a download), and the estimate only
decides how much history fits a budget.
"""

from __future__ import annotations

import json
from typing import Any

CHARS_PER_TOKEN = 4
IDLE = "IDLE"

PROTOCOL = """\
You are the agent "{id}" in Legion. Each session handles one incoming message.
Use your tools when they help; more tools (web, HTTP, schedules, watchers,
writing your own) are one tool_search away, called with tool_invoke. When you
are done, answer with your reply as
plain text: it is delivered to the sender. If the message needs no answer (a
thank-you, an acknowledgement, something already handled), answer with exactly
IDLE and nothing else. Never reply only to be polite. A message from another
agent ("[message from agent:ID]") is answered the same way: your reply goes
back to that agent's inbox, so reply only when it moves the work on."""


def system_prompt(agent_id: str, own: str) -> str:
    protocol = PROTOCOL.format(id=agent_id)
    return f"{own.strip()}\n\n{protocol}" if own.strip() else protocol


def user_message(sender: str, body: str) -> dict[str, Any]:
    if sender == "user":
        return {"role": "user", "content": body}
    return {"role": "user", "content": f"[message from {sender}]\n{body}"}


def estimate(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> int:
    """Estimated prompt tokens: the messages and the tool schemas sent with them."""
    chars = sum(len(json.dumps(m)) for m in messages)
    chars += len(json.dumps(tools, separators=(",", ":"))) if tools else 0
    return chars // CHARS_PER_TOKEN
