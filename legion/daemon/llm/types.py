"""What the model layer hands back: one turn's completion, its tool calls, its usage."""

from __future__ import annotations

from typing import Any

import msgspec

# A tool call is part of the public tool API; the model layer produces it.
from legion.tool import ToolCall

__all__ = ["Completion", "ToolCall", "Usage"]


class Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float = 0.0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.cost += other.cost

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "total_tokens": self.total,
            "cost": round(self.cost, 6),
        }


class Completion(msgspec.Struct):
    text: str
    reasoning: str
    tool_calls: list[ToolCall]
    finish_reason: str
    usage: Usage
    # The concrete model that answered ("provider/model"), after fallbacks.
    model: str
    repaired: bool = False
