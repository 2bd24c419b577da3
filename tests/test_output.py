"""Text output read by scripts: piped (not a terminal), tables print plain, one row a
line, every value whole, and text that looks like markup is printed as it is."""

from __future__ import annotations

from tests.conftest import Daemon

LONG_ID = "an-agent-with-a-rather-long-identifier-for-columns"
PROMPT = (
    "check the [embed] extra, then write the nightly report about every service "
    "that changed since yesterday, with links"
)


def _row(out: str, first: str) -> str:
    lines = [line for line in out.splitlines() if line.split(" ", 1)[0] == first]
    assert len(lines) == 1, out
    return lines[0]


def test_piped_tables_keep_every_value_whole_on_one_line(daemon: Daemon) -> None:
    daemon.cli("spawn", LONG_ID, "--model", "mock/echo")
    res = daemon.cli("cron", "add", LONG_ID, PROMPT, "--cron", "0 9 * * *")
    assert res.code == 0, res.err

    ps = daemon.cli("ps").out
    row = _row(ps, LONG_ID)
    assert "mock/echo" in row and "running" in row and "…" not in row

    cron = daemon.cli("cron", "ls", LONG_ID).out
    row = _row(cron, "1")
    # The whole prompt, brackets and all, and the whole next-fire time.
    assert PROMPT in row and "T09:00:00.000Z" in row

    tools = daemon.cli("tools", "ls").out
    for line in tools.splitlines()[1:]:
        assert "…" not in line and line.strip()
    listed = daemon.cli_json("tools", "ls")
    # The whole first sentence of a long description, not cut at the column's width.
    longest = max(listed["tools"], key=lambda t: len(t["description"].split(". ", 1)[0]))
    sentence = longest["description"].split(". ", 1)[0]
    assert len(sentence) > 70 and sentence in _row(tools, longest["name"])
    # One line per tool.
    names = [t["name"] for t in listed["tools"]]
    assert sum(1 for line in tools.splitlines() if line.split(" ", 1)[0] in names) == len(names)
