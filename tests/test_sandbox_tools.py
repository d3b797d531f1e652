"""Tests for the built-in sandbox tools (managed_agents._sandbox.tools): real files under tmp_path."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from managed_agents._sandbox import tools as tools_mod
from managed_agents._sandbox.tools import (
    TOOL_NAMES,
    PathEscapeError,
    ToolLimits,
    ToolOutcome,
    run_tool,
    tool_definitions,
)

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64))
PDF_BYTES = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


# ----------------------------------------------------------------------------------------------
# helpers / fixtures
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    d = tmp_path / "ws"
    d.mkdir()
    return d


@pytest.fixture
def real_ws(ws: Path) -> str:
    """The workspace's canonical path (what bash sees as cwd/HOME/PWD)."""
    return os.path.realpath(ws)


def exists(path: str) -> bool:
    return os.path.lexists(path)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret.txt").write_text("TOP-SECRET outside the workspace\n")
    return d


def text_of(outcome: ToolOutcome) -> str:
    assert all(block["type"] == "text" for block in outcome.content), outcome.content
    return "".join(block["text"] for block in outcome.content)


async def ok(ws: Path, name: str, tool_input: dict, limits: ToolLimits | None = None) -> str:
    outcome = await run_tool(ws, name, tool_input, limits or ToolLimits())
    assert not outcome.is_error, outcome.content
    return text_of(outcome)


async def err(ws: Path, name: str, tool_input: dict, limits: ToolLimits | None = None) -> str:
    outcome = await run_tool(ws, name, tool_input, limits or ToolLimits())
    assert outcome.is_error, outcome.content
    text = text_of(outcome)
    assert text.strip()
    return text


def procs_with(marker: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry))
    return found


async def wait_gone(marker: str, within: float = 2.0) -> list[int]:
    for _ in range(int(within / 0.05)):
        if not procs_with(marker):
            break
        await asyncio.sleep(0.05)
    return procs_with(marker)


def unique_sleep() -> str:
    """A sleep duration nobody else uses, so /proc can tell our sleeps apart."""
    return f"{random.randint(300, 899)}.{random.randint(100000, 999999)}"


# ----------------------------------------------------------------------------------------------
# limits / outcome models
# ----------------------------------------------------------------------------------------------


def test_tool_limits_defaults_frozen_and_validated() -> None:
    limits = ToolLimits()
    assert limits.default_timeout_s == 120.0
    assert limits.max_timeout_s == 600.0
    assert limits.max_output_bytes == 100 * 1024
    assert limits.max_read_bytes == 256 * 1024
    assert limits.max_glob_results == 200
    with pytest.raises(ValidationError):
        limits.max_output_bytes = 5  # type: ignore[misc]
    for field in (
        "default_timeout_s",
        "max_timeout_s",
        "max_output_bytes",
        "max_read_bytes",
        "max_glob_results",
    ):
        with pytest.raises(ValidationError, match=field):
            ToolLimits(**{field: 0})
        with pytest.raises(ValidationError, match=field):
            ToolLimits(**{field: -1})
    with pytest.raises(ValidationError):
        ToolLimits(default_timeout_s=10, max_timeout_s=5)
    with pytest.raises(ValidationError):
        ToolLimits(max_timeout_s=float("inf"))
    with pytest.raises(ValidationError):
        ToolLimits(bogus=1)  # type: ignore[call-arg]


# ----------------------------------------------------------------------------------------------
# dispatch & input validation
# ----------------------------------------------------------------------------------------------


async def test_unknown_tool_is_error(ws: Path) -> None:
    text = await err(ws, "web_fetch", {"url": "x"})
    assert "unknown tool 'web_fetch'" in text
    assert "bash" in text


async def test_missing_workspace_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="workspace"):
        await run_tool(tmp_path / "nope", "read", {"file_path": "a"})
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        await run_tool(tmp_path / "file", "read", {"file_path": "a"})


async def test_non_object_input_is_error(ws: Path) -> None:
    text = await err(ws, "read", ["a"])  # type: ignore[arg-type]
    assert "JSON object" in text


@pytest.mark.parametrize(
    ("name", "tool_input", "expected"),
    [
        ("read", {}, "missing required field 'file_path'"),
        ("read", {"file_path": "a", "extra": 1}, "unexpected field 'extra'"),
        ("read", {"file_path": 5}, "field 'file_path'"),
        ("read", {"file_path": "a", "view_range": "1-2"}, "field 'view_range'"),
        ("read", {"file_path": "a", "view_range": [1, "x"]}, "field 'view_range.1'"),
        ("write", {"file_path": "a"}, "missing required field 'content'"),
        ("edit", {"file_path": "a", "old_string": "x"}, "missing required field 'new_string'"),
        (
            "edit",
            {"file_path": "a", "old_string": "x", "new_string": "y", "replace_all": "maybe"},
            "replace_all",
        ),
        ("glob", {}, "missing required field 'pattern'"),
        ("glob", {"pattern": "*", "root": "x"}, "unexpected field 'root'"),
        ("grep", {"pattern": None}, "field 'pattern'"),
        ("bash", {"cmd": "ls"}, "unexpected field 'cmd'"),
        ("bash", {"command": "ls", "timeout_ms": "soon"}, "field 'timeout_ms'"),
    ],
)
async def test_input_validation_names_the_field(ws: Path, name: str, tool_input: dict, expected: str) -> None:
    text = await err(ws, name, tool_input)
    assert text.startswith(f"invalid input for {name}:")
    assert expected in text


# ----------------------------------------------------------------------------------------------
# tool_definitions
# ----------------------------------------------------------------------------------------------


def test_tool_definitions_shape_and_order() -> None:
    defs = tool_definitions(TOOL_NAMES)
    assert [d["name"] for d in defs] == list(TOOL_NAMES)
    assert [d["name"] for d in tool_definitions(["grep", "bash"])] == ["grep", "bash"]
    for d in defs:
        assert set(d) == {"name", "description", "input_schema"}
        assert isinstance(d["description"], str) and len(d["description"]) > 40
        schema = d["input_schema"]
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is False
        model = tools_mod._INPUT_MODELS[d["name"]]
        assert set(schema["properties"]) == set(model.model_fields)
        assert set(schema["required"]) == {n for n, f in model.model_fields.items() if f.is_required()}
        for prop in schema["properties"].values():
            assert prop["type"] in {"string", "integer", "boolean", "array"}
            assert prop["description"]
    by_name = {d["name"]: d for d in defs}
    assert by_name["read"]["input_schema"]["properties"]["view_range"]["items"] == {"type": "integer"}
    assert "100 KiB" in by_name["bash"]["description"]
    assert "120 s" in by_name["bash"]["description"] and "600 s" in by_name["bash"]["description"]
    assert "256 KiB" in by_name["read"]["description"]
    assert "200" in by_name["glob"]["description"]
    assert "100 KiB" in by_name["grep"]["description"]
    assert "workspace root" in by_name["write"]["description"]


def test_tool_definitions_are_byte_stable_and_not_shared() -> None:
    first = tool_definitions(TOOL_NAMES)
    dumped = json.dumps(first, sort_keys=False)
    first[0]["input_schema"]["properties"].clear()  # mutating a result must not leak into the next call
    first[0]["description"] = "changed"
    assert json.dumps(tool_definitions(TOOL_NAMES), sort_keys=False) == dumped
    assert tool_definitions(TOOL_NAMES) == tool_definitions(list(TOOL_NAMES))
    assert tool_definitions([]) == []


def test_tool_definitions_unknown_name_raises() -> None:
    with pytest.raises(ValueError, match="unknown sandbox tool"):
        tool_definitions(["bash", "web_search"])


def test_tool_definitions_reflect_custom_limits() -> None:
    limits = ToolLimits(max_output_bytes=2048, default_timeout_s=30, max_glob_results=50)
    by_name = {d["name"]: d for d in tool_definitions(TOOL_NAMES, limits=limits)}
    assert "2 KiB" in by_name["bash"]["description"] and "30 s" in by_name["bash"]["description"]
    assert "50" in by_name["glob"]["description"]


# ----------------------------------------------------------------------------------------------
# read
# ----------------------------------------------------------------------------------------------


async def test_read_whole_file_and_ranges(ws: Path) -> None:
    (ws / "a.txt").write_text("one\ntwo\nthree\nfour\n")
    assert await ok(ws, "read", {"file_path": "a.txt"}) == "one\ntwo\nthree\nfour\n"
    assert await ok(ws, "read", {"file_path": "a.txt", "view_range": [2, 3]}) == "two\nthree\n"
    assert await ok(ws, "read", {"file_path": "a.txt", "view_range": [3, 0]}) == "three\nfour\n"
    assert await ok(ws, "read", {"file_path": "a.txt", "view_range": [2, -1]}) == "two\nthree\nfour\n"
    assert await ok(ws, "read", {"file_path": "a.txt", "view_range": [4, 99]}) == "four\n"
    assert await ok(ws, "read", {"file_path": "./a.txt"}) == "one\ntwo\nthree\nfour\n"
    assert await ok(ws, "read", {"file_path": str(ws / "a.txt")}) == "one\ntwo\nthree\nfour\n"
    assert await ok(ws, "read", {"file_path": "~/a.txt"}) == "one\ntwo\nthree\nfour\n"


async def test_read_no_trailing_newline_and_non_utf8(ws: Path) -> None:
    (ws / "b.txt").write_bytes(b"caf\xe9\nend")
    assert await ok(ws, "read", {"file_path": "b.txt"}) == "caf\ufffd\nend"
    assert await ok(ws, "read", {"file_path": "b.txt", "view_range": [2, 2]}) == "end"


@pytest.mark.parametrize(
    ("view_range", "expected"),
    [
        ([5, 0], "beyond the end of a.txt (2 lines)"),
        ([0, 1], "start_line must be >= 1"),
        ([3, 2], "end_line (2) is before start_line (3)"),
        ([1], "view_range"),
        ([1, 2, 3], "view_range"),
    ],
)
async def test_read_bad_view_range(ws: Path, view_range: list[int], expected: str) -> None:
    (ws / "a.txt").write_text("x\ny\n")
    assert expected in await err(ws, "read", {"file_path": "a.txt", "view_range": view_range})


async def test_read_truncates_at_cap_and_view_range_continues(ws: Path) -> None:
    lines = [f"line{i:05d}\n" for i in range(1, 101)]  # 10 bytes each
    (ws / "big.txt").write_text("".join(lines))
    limits = ToolLimits(max_read_bytes=95)
    text = await ok(ws, "read", {"file_path": "big.txt"}, limits)
    assert text.startswith("".join(lines[:9]))
    assert "line00010" not in text
    assert "showing lines 1-9" in text and "view_range [10, 0]" in text
    text2 = await ok(ws, "read", {"file_path": "big.txt", "view_range": [10, 0]}, limits)
    assert text2.startswith("line00010\n") and "view_range [19, 0]" in text2
    assert await ok(ws, "read", {"file_path": "big.txt", "view_range": [100, 0]}, limits) == "line00100\n"


async def test_read_single_huge_line_is_cut(ws: Path) -> None:
    (ws / "min.js").write_text("x" * 5000 + "\nsecond\n")
    text = await ok(ws, "read", {"file_path": "min.js"}, ToolLimits(max_read_bytes=100))
    assert text.startswith("x" * 100) and "x" * 101 not in text
    assert "line 1 is longer than" in text
    assert await ok(ws, "read", {"file_path": "min.js", "view_range": [2, 2]}, ToolLimits(max_read_bytes=100)) == (
        "second\n"
    )


async def test_read_empty_file(ws: Path) -> None:
    (ws / "empty").write_text("")
    assert "empty" in await ok(ws, "read", {"file_path": "empty"})


async def test_read_errors(ws: Path) -> None:
    (ws / "sub").mkdir()
    (ws / "blob.bin").write_bytes(b"\x7fELF\x00\x01\x02" * 10)
    assert "file not found: nope.txt" in await err(ws, "read", {"file_path": "nope.txt"})
    assert "directory" in await err(ws, "read", {"file_path": "sub"})
    assert "directory" in await err(ws, "read", {"file_path": "."})
    assert "binary" in await err(ws, "read", {"file_path": "blob.bin"})
    assert "null byte" in await err(ws, "read", {"file_path": "a\x00b"})
    assert "must not be empty" in await err(ws, "read", {"file_path": ""})
    os.mkfifo(ws / "fifo")  # reading a FIFO would block forever
    assert "not a regular file" in await err(ws, "read", {"file_path": "fifo"})
    assert "not a directory" in (await err(ws, "read", {"file_path": "blob.bin/x"})).lower()


async def test_read_images_and_pdf(ws: Path) -> None:
    (ws / "img.png").write_bytes(PNG_BYTES)
    (ws / "actually_png.jpg").write_bytes(PNG_BYTES)
    (ws / "doc.pdf").write_bytes(PDF_BYTES)
    (ws / "fake.png").write_text("just text\n")
    gif = b"GIF89a" + bytes(20)
    (ws / "anim.GIF").write_bytes(gif)
    webp = b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(8)
    (ws / "pic.webp").write_bytes(webp)
    jpeg = b"\xff\xd8\xff\xe0" + bytes(30)
    (ws / "photo.jpeg").write_bytes(jpeg)

    out = await run_tool(ws, "read", {"file_path": "img.png"})
    assert not out.is_error
    assert out.content == [
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": "image/png",
                "data": base64.b64encode(PNG_BYTES).decode(),
            },
        }
    ]
    out = await run_tool(ws, "read", {"file_path": "actually_png.jpg"})
    assert out.content[0]["source"]["media_type"] == "image/png"  # content wins over the extension
    for name, media_type, data in (
        ("anim.GIF", "image/gif", gif),
        ("pic.webp", "image/webp", webp),
        ("photo.jpeg", "image/jpeg", jpeg),
    ):
        out = await run_tool(ws, "read", {"file_path": name})
        assert out.content[0]["type"] == "image"
        assert out.content[0]["source"]["media_type"] == media_type
        assert base64.b64decode(out.content[0]["source"]["data"]) == data
    out = await run_tool(ws, "read", {"file_path": "doc.pdf"})
    assert out.content == [
        {
            "type": "document",
            "source": {
                "type": "base64",
                "media_type": "application/pdf",
                "data": base64.b64encode(PDF_BYTES).decode(),
            },
        }
    ]
    # a .png that is not an image is just read as text
    assert await ok(ws, "read", {"file_path": "fake.png"}) == "just text\n"
    # media over the cap
    assert "cannot be returned" in await err(ws, "read", {"file_path": "img.png"}, ToolLimits(max_media_bytes=10))


# ----------------------------------------------------------------------------------------------
# write
# ----------------------------------------------------------------------------------------------


async def test_write_creates_parents_and_overwrites(ws: Path) -> None:
    assert await ok(ws, "write", {"file_path": "a/b/c.txt", "content": "héllo"}) == "wrote 6 bytes to a/b/c.txt"
    assert (ws / "a/b/c.txt").read_text() == "héllo"
    assert await ok(ws, "write", {"file_path": "a/b/c.txt", "content": ""}) == "wrote 0 bytes to a/b/c.txt"
    assert (ws / "a/b/c.txt").read_text() == ""
    abs_path = str(ws / "abs.txt")
    assert await ok(ws, "write", {"file_path": abs_path, "content": "x"}) == f"wrote 1 bytes to {abs_path}"
    assert (ws / "abs.txt").read_text() == "x"
    await ok(ws, "write", {"file_path": "~/home.txt", "content": "h"})
    assert (ws / "home.txt").read_text() == "h"


async def test_write_errors(ws: Path) -> None:
    (ws / "d").mkdir()
    (ws / "f").write_text("x")
    assert "is a directory" in await err(ws, "write", {"file_path": "d", "content": "x"})
    assert "could not write f/g" in await err(ws, "write", {"file_path": "f/g", "content": "x"})
    assert "null byte" in await err(ws, "write", {"file_path": "x\x00", "content": "x"})
    assert "content" in await err(ws, "write", {"file_path": "s.txt", "content": "bad \ud800 surrogate"})


# ----------------------------------------------------------------------------------------------
# edit
# ----------------------------------------------------------------------------------------------


async def test_edit_unique_and_replace_all(ws: Path) -> None:
    (ws / "m.py").write_text("a = 1\nb = 2\na = 1\nc = 3\n")
    assert (
        await ok(ws, "edit", {"file_path": "m.py", "old_string": "b = 2", "new_string": "b = 20"})
        == "edited m.py (1 replacement)"
    )
    assert (ws / "m.py").read_text() == "a = 1\nb = 20\na = 1\nc = 3\n"
    text = await err(ws, "edit", {"file_path": "m.py", "old_string": "a = 1", "new_string": "a = 9"})
    assert "occurs 2 times" in text and "replace_all" in text
    assert (ws / "m.py").read_text() == "a = 1\nb = 20\na = 1\nc = 3\n"
    assert (
        await ok(
            ws,
            "edit",
            {"file_path": "m.py", "old_string": "a = 1", "new_string": "a = 9", "replace_all": True},
        )
        == "edited m.py (2 replacements)"
    )
    assert (ws / "m.py").read_text() == "a = 9\nb = 20\na = 9\nc = 3\n"


async def test_edit_errors(ws: Path) -> None:
    (ws / "m.txt").write_text("hello world\n")
    (ws / "bin").write_bytes(b"\x00\x01hello")
    (ws / "latin1.txt").write_bytes(b"caf\xe9 hello")
    assert "old_string not found in m.txt" in await err(
        ws, "edit", {"file_path": "m.txt", "old_string": "bye", "new_string": "x"}
    )
    assert "identical" in await err(ws, "edit", {"file_path": "m.txt", "old_string": "hello", "new_string": "hello"})
    assert "old_string" in await err(ws, "edit", {"file_path": "m.txt", "old_string": "", "new_string": "x"})
    assert "file not found: nope" in await err(ws, "edit", {"file_path": "nope", "old_string": "a", "new_string": "b"})
    assert "binary" in await err(ws, "edit", {"file_path": "bin", "old_string": "hello", "new_string": "x"})
    assert "UTF-8" in await err(ws, "edit", {"file_path": "latin1.txt", "old_string": "hello", "new_string": "x"})
    assert "directory" in await err(ws, "edit", {"file_path": ".", "old_string": "a", "new_string": "b"})
    assert (ws / "m.txt").read_text() == "hello world\n"


# ----------------------------------------------------------------------------------------------
# glob
# ----------------------------------------------------------------------------------------------


def make_tree(ws: Path) -> None:
    files = {
        "top.py": 100,
        "README.md": 200,
        "src/app.py": 300,
        "src/util.ts": 400,
        "src/view.tsx": 500,
        "src/deep/er/core.py": 600,
        ".hidden/h.py": 50,
    }
    for rel, mtime in files.items():
        p = ws / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"# {rel}\n")
        os.utime(p, (mtime, mtime))
    for d in (".hidden", "src", "src/deep", "src/deep/er"):
        os.utime(ws / d, (10, 10))  # directories oldest


async def test_glob_doublestar_newest_first(ws: Path) -> None:
    make_tree(ws)
    text = await ok(ws, "glob", {"pattern": "**/*.py"})
    assert text.splitlines() == ["src/deep/er/core.py", "src/app.py", "top.py", ".hidden/h.py"]
    assert (await ok(ws, "glob", {"pattern": "*.py"})).splitlines() == ["top.py"]
    assert (await ok(ws, "glob", {"pattern": "src/*.{ts,tsx}"})).splitlines() == [
        "src/view.tsx",
        "src/util.ts",
    ]
    assert (await ok(ws, "glob", {"pattern": "src/**/*.py"})).splitlines() == [
        "src/deep/er/core.py",
        "src/app.py",
    ]
    assert (await ok(ws, "glob", {"pattern": "**/[ac]*.py"})).splitlines() == [
        "src/deep/er/core.py",
        "src/app.py",
    ]
    assert (await ok(ws, "glob", {"pattern": "**/?op.py"})).splitlines() == ["top.py"]
    assert (await ok(ws, "glob", {"pattern": "./README.md"})).splitlines() == ["README.md"]
    assert "no matches" == await ok(ws, "glob", {"pattern": "**/*.rs"})
    assert "no matches" == await ok(ws, "glob", {"pattern": "missing_dir/**"})


async def test_glob_path_and_directories(ws: Path) -> None:
    make_tree(ws)
    assert (await ok(ws, "glob", {"pattern": "*.py", "path": "src"})).splitlines() == ["src/app.py"]
    assert (await ok(ws, "glob", {"pattern": "**/*.py", "path": "src/deep"})).splitlines() == ["src/deep/er/core.py"]
    assert (await ok(ws, "glob", {"pattern": "*.py", "path": str(ws / "src")})).splitlines() == ["src/app.py"]
    listing = (await ok(ws, "glob", {"pattern": "src/*"})).splitlines()
    assert set(listing) == {"src/app.py", "src/util.ts", "src/view.tsx", "src/deep/"}
    assert "path not found: nope" in await err(ws, "glob", {"pattern": "*", "path": "nope"})
    assert "not a directory" in await err(ws, "glob", {"pattern": "*", "path": "top.py"})


async def test_glob_result_cap(ws: Path) -> None:
    make_tree(ws)
    text = await ok(ws, "glob", {"pattern": "**/*"}, ToolLimits(max_glob_results=2))
    lines = text.splitlines()
    assert lines[:2] == ["src/deep/er/core.py", "src/view.tsx"]
    assert "showing the 2 newest of" in lines[2]
    assert len(lines) == 3


async def test_glob_includes_inside_symlinks(ws: Path) -> None:
    make_tree(ws)
    (ws / "link.py").symlink_to(ws / "src" / "app.py")
    (ws / "srclink").symlink_to(ws / "src")
    assert "link.py" in (await ok(ws, "glob", {"pattern": "*.py"})).splitlines()
    # symlinked dirs are listed but not descended into by **, but an explicit prefix works
    assert "srclink/" in (await ok(ws, "glob", {"pattern": "*"})).splitlines()
    assert "srclink/app.py" not in await ok(ws, "glob", {"pattern": "**/*.py"})
    assert (await ok(ws, "glob", {"pattern": "srclink/*.py"})).splitlines() == ["srclink/app.py"]


@pytest.mark.parametrize(
    "pattern",
    ["../*", "../**/*", "src/../../*", "**/../../etc/passwd", "{..,src}/*", "a/{b,../..}/*"],
)
async def test_glob_refuses_dotdot(ws: Path, pattern: str) -> None:
    make_tree(ws)
    assert await err(ws, "glob", {"pattern": pattern}) == f"path escapes the workspace: {pattern}"


async def test_glob_refuses_absolute_and_bad_input(ws: Path) -> None:
    assert "relative" in await err(ws, "glob", {"pattern": "/etc/*"})
    assert "relative" in await err(ws, "glob", {"pattern": "{/etc,src}/*"})
    assert "relative" in await err(ws, "glob", {"pattern": str(ws / "*")})
    assert "null byte" in await err(ws, "glob", {"pattern": "a\x00*"})
    assert await err(ws, "glob", {"pattern": "*", "path": "/etc"}) == "path escapes the workspace: /etc"
    assert await err(ws, "glob", {"pattern": "*", "path": ".."}) == "path escapes the workspace: .."
    assert "more than" in await err(ws, "glob", {"pattern": "{a,b}" * 10})


# ----------------------------------------------------------------------------------------------
# grep
# ----------------------------------------------------------------------------------------------


async def test_grep_happy_path(ws: Path) -> None:
    (ws / "a.py").write_text("import os\nx = 1\nimport re\n")
    (ws / "sub").mkdir()
    (ws / "sub" / "b.py").write_text("nothing\n  import sys\r\n")
    (ws / "sub" / "bin.dat").write_bytes(b"\x00import binary\n")
    text = await ok(ws, "grep", {"pattern": r"^\s*import \w+"})
    assert text.splitlines() == ["a.py:1:import os", "a.py:3:import re", "sub/b.py:2:  import sys"]
    assert (await ok(ws, "grep", {"pattern": "import", "path": "sub"})).splitlines() == ["sub/b.py:2:  import sys"]
    assert (await ok(ws, "grep", {"pattern": "x = ", "path": "a.py"})).splitlines() == ["a.py:2:x = 1"]
    assert (await ok(ws, "grep", {"pattern": "import", "path": str(ws / "sub")})).splitlines() == [
        "sub/b.py:2:  import sys"
    ]
    assert await ok(ws, "grep", {"pattern": "zzz"}) == "no matches"


async def test_grep_errors_and_cap(ws: Path) -> None:
    text = await err(ws, "grep", {"pattern": "foo("})
    assert "pattern" in text and "'foo('" in text
    assert "path not found: nope" in await err(ws, "grep", {"pattern": "x", "path": "nope"})
    (ws / "many.txt").write_text("match line\n" * 1000)
    text = await ok(ws, "grep", {"pattern": "match"}, ToolLimits(max_output_bytes=500))
    body, note = text.rsplit("\n", 1)
    assert len(body.encode()) <= 500
    assert "output truncated" in note
    assert body.splitlines()[0] == "many.txt:1:match line"


async def test_grep_long_line_is_shortened(ws: Path) -> None:
    (ws / "min.js").write_text("var a=1;" * 2000 + "needle\n")
    text = await ok(ws, "grep", {"pattern": "var"})
    assert text.startswith("min.js:1:var a=1;") and text.endswith("[line truncated]")
    assert len(text) < 2200


# ----------------------------------------------------------------------------------------------
# workspace confinement
# ----------------------------------------------------------------------------------------------

ESCAPES = [
    "../x",
    "../outside/secret.txt",
    "/etc/passwd",
    "subdir/../../x",
    "subdir/../../outside/secret.txt",
]


@pytest.mark.parametrize("given", ESCAPES)
async def test_read_write_edit_refuse_escapes(ws: Path, outside: Path, given: str) -> None:
    (ws / "subdir").mkdir()
    expected = f"path escapes the workspace: {given}"
    assert await err(ws, "read", {"file_path": given}) == expected
    assert await err(ws, "write", {"file_path": given, "content": "pwned"}) == expected
    assert await err(ws, "edit", {"file_path": given, "old_string": "TOP", "new_string": "pwned"}) == expected
    assert await err(ws, "glob", {"pattern": "*", "path": given}) == expected
    assert await err(ws, "grep", {"pattern": "TOP", "path": given}) == expected
    assert (outside / "secret.txt").read_text() == "TOP-SECRET outside the workspace\n"
    assert not (ws.parent / "x").exists()


async def test_symlink_to_etc(ws: Path) -> None:
    (ws / "etc").symlink_to("/etc")
    for given in ("etc/passwd", "etc", "./etc/../etc/passwd"):
        assert await err(ws, "read", {"file_path": given}) == f"path escapes the workspace: {given}"
    assert await err(ws, "write", {"file_path": "etc/pwned", "content": "x"}) == (
        "path escapes the workspace: etc/pwned"
    )
    assert not exists("/etc/pwned")
    assert await err(ws, "edit", {"file_path": "etc/hostname", "old_string": "a", "new_string": "b"}) == (
        "path escapes the workspace: etc/hostname"
    )
    assert await err(ws, "glob", {"pattern": "etc/*"}) == "path escapes the workspace: etc/*"
    assert await err(ws, "glob", {"pattern": "etc"}) == "path escapes the workspace: etc"
    assert await err(ws, "glob", {"pattern": "*", "path": "etc"}) == "path escapes the workspace: etc"
    assert await ok(ws, "glob", {"pattern": "**/passwd"}) == "no matches"
    assert await ok(ws, "glob", {"pattern": "**"}) == "no matches"  # the link itself is not listed
    assert await err(ws, "grep", {"pattern": "root", "path": "etc"}) == "path escapes the workspace: etc"
    assert await err(ws, "grep", {"pattern": "root", "path": "etc/passwd"}) == (
        "path escapes the workspace: etc/passwd"
    )
    assert await ok(ws, "grep", {"pattern": "root"}) == "no matches"


async def test_symlinks_to_outside_dir_and_file(ws: Path, outside: Path) -> None:
    (ws / "out").symlink_to(outside)
    (ws / "secret_link").symlink_to(outside / "secret.txt")
    (ws / "sub").mkdir()
    (ws / "sub" / "rel_link").symlink_to("../../outside/secret.txt")  # relative target
    (ws / "dangling").symlink_to(outside / "new_file.txt")
    (ws / "visible.txt").write_text("TOP inside\n")
    for given in ("secret_link", "sub/rel_link", "out/secret.txt", "out"):
        assert await err(ws, "read", {"file_path": given}) == f"path escapes the workspace: {given}"
    for given in ("secret_link", "out/secret.txt", "dangling", "out/new.txt", "sub/rel_link"):
        assert await err(ws, "write", {"file_path": given, "content": "pwned"}) == (
            f"path escapes the workspace: {given}"
        )
        assert await err(ws, "edit", {"file_path": given, "old_string": "TOP", "new_string": "x"}) == (
            f"path escapes the workspace: {given}"
        )
    assert not (outside / "new_file.txt").exists()
    assert not (outside / "new.txt").exists()
    assert (outside / "secret.txt").read_text() == "TOP-SECRET outside the workspace\n"
    # glob/grep never surface or read anything through those links
    assert await ok(ws, "grep", {"pattern": "TOP"}) == "visible.txt:1:TOP inside"
    assert (await ok(ws, "glob", {"pattern": "**"})).splitlines() == ["visible.txt", "sub/"]
    assert await ok(ws, "glob", {"pattern": "**/secret*"}) == "no matches"
    assert await err(ws, "glob", {"pattern": "out/*.txt"}) == "path escapes the workspace: out/*.txt"
    assert await err(ws, "grep", {"pattern": "TOP", "path": "secret_link"}) == (
        "path escapes the workspace: secret_link"
    )


async def test_symlink_created_by_bash(ws: Path) -> None:
    await ok(ws, "bash", {"command": "ln -s / escape && ln -s /etc/passwd pw"})
    assert await err(ws, "read", {"file_path": "escape/etc/passwd"}) == (
        "path escapes the workspace: escape/etc/passwd"
    )
    assert await err(ws, "read", {"file_path": "pw"}) == "path escapes the workspace: pw"
    assert await err(ws, "write", {"file_path": "escape/tmp/pwned", "content": "x"}) == (
        "path escapes the workspace: escape/tmp/pwned"
    )
    assert await err(ws, "glob", {"pattern": "escape/etc/*"}) == "path escapes the workspace: escape/etc/*"
    assert await ok(ws, "grep", {"pattern": "root:"}) == "no matches"


async def test_symlink_loop_and_chain(ws: Path, outside: Path) -> None:
    (ws / "loop").symlink_to("loop")
    (ws / "a").symlink_to("b")
    (ws / "b").symlink_to(outside)
    assert await err(ws, "read", {"file_path": "a/secret.txt"}) == "path escapes the workspace: a/secret.txt"
    assert "loop" in await err(ws, "read", {"file_path": "loop"})
    assert await ok(ws, "glob", {"pattern": "**"}) == "loop"  # inside (if unusable); a and b are not listed
    assert await ok(ws, "grep", {"pattern": "."}) == "no matches"


async def test_inside_symlinks_are_allowed(ws: Path) -> None:
    (ws / "real").mkdir()
    (ws / "real" / "f.txt").write_text("inside\n")
    (ws / "dirlink").symlink_to("real")
    (ws / "filelink").symlink_to(ws / "real" / "f.txt")
    (ws / "newlink").symlink_to("real/new.txt")  # dangling, but inside
    assert await ok(ws, "read", {"file_path": "dirlink/f.txt"}) == "inside\n"
    assert await ok(ws, "read", {"file_path": "filelink"}) == "inside\n"
    await ok(ws, "edit", {"file_path": "filelink", "old_string": "inside", "new_string": "edited"})
    assert (ws / "real" / "f.txt").read_text() == "edited\n"
    assert (ws / "filelink").is_symlink()
    await ok(ws, "write", {"file_path": "dirlink/g.txt", "content": "g"})
    assert (ws / "real" / "g.txt").read_text() == "g"
    await ok(ws, "write", {"file_path": "newlink", "content": "n"})
    assert (ws / "real" / "new.txt").read_text() == "n"
    assert "filelink:1:edited" in (await ok(ws, "grep", {"pattern": "edited"})).splitlines()
    assert (await ok(ws, "grep", {"pattern": "edited", "path": "dirlink"})).splitlines() == ["real/f.txt:1:edited"]


async def test_workspace_given_through_a_symlink(tmp_path: Path, ws: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(ws)
    (ws / "f.txt").write_text("hi\n")
    assert await ok(alias, "read", {"file_path": "f.txt"}) == "hi\n"
    assert await ok(alias, "read", {"file_path": str(alias / "f.txt")}) == "hi\n"
    assert await ok(alias, "read", {"file_path": str(ws / "f.txt")}) == "hi\n"
    assert await ok(alias, "glob", {"pattern": "*"}) == "f.txt"


# ----------------------------------------------------------------------------------------------
# bash
# ----------------------------------------------------------------------------------------------


async def test_bash_basic_and_cwd(ws: Path, real_ws: str) -> None:
    assert await ok(ws, "bash", {"command": "echo hello"}) == "hello\n"
    assert await ok(ws, "bash", {"command": "pwd"}) == real_ws + "\n"
    assert await ok(ws, "bash", {"command": "echo a; echo b >&2; echo c"}) == "a\nb\nc\n"
    assert await ok(ws, "bash", {"command": "true"}) == "(no output)"
    assert await ok(ws, "bash", {"command": "cat"}) == "(no output)"  # stdin is /dev/null
    await ok(ws, "bash", {"command": "echo data > made.txt", "timeout_ms": 0})
    assert (ws / "made.txt").read_text() == "data\n"


async def test_bash_state_does_not_persist(ws: Path, real_ws: str) -> None:
    await ok(ws, "bash", {"command": "export FOO=bar; mkdir d; cd d"})
    assert await ok(ws, "bash", {"command": 'echo "[$FOO]"; pwd'}) == f"[]\n{real_ws}\n"


async def test_bash_env_is_scrubbed(ws: Path, real_ws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    monkeypatch.setenv("TEMPORAL_SOMETHING", "sk-secret-2")
    assert os.environ["ANTHROPIC_API_KEY"] == "sk-secret"
    text = await ok(ws, "bash", {"command": "env"})
    assert "sk-secret" not in text
    assert "ANTHROPIC_API_KEY" not in text
    env = dict(line.split("=", 1) for line in text.splitlines())
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert env["HOME"] == real_ws
    assert env["PWD"] == real_ws
    assert env["LANG"] == "C.UTF-8"
    assert env["TERM"] == "dumb"
    assert set(env) <= {"PATH", "HOME", "LANG", "TERM", "PWD", "SHLVL", "_", "OLDPWD"}


async def test_bash_nonzero_exit(ws: Path) -> None:
    text = await err(ws, "bash", {"command": "echo oops; exit 3"})
    assert text == "oops\nexit code: 3"
    assert await err(ws, "bash", {"command": "exit 1"}) == "exit code: 1"
    assert "command not found" in await err(ws, "bash", {"command": "definitely-not-a-command-xyz"})
    assert await err(ws, "bash", {"command": "kill -9 $$"}) == "exit code: 137 (killed by SIGKILL)"


async def test_bash_timeout_kills_process_group(ws: Path) -> None:
    dur = unique_sleep()
    start = time.monotonic()
    text = await err(ws, "bash", {"command": f"echo before; sleep {dur} & sleep {dur}", "timeout_ms": 500})
    elapsed = time.monotonic() - start
    assert elapsed < 2.5, elapsed
    assert text == "before\ncommand timed out after 0.5 s"
    assert await wait_gone(dur) == []


async def test_bash_timeout_is_clamped(ws: Path) -> None:
    limits = ToolLimits(default_timeout_s=0.3, max_timeout_s=0.6)
    start = time.monotonic()
    assert "timed out after 0.6 s" in await err(ws, "bash", {"command": "sleep 5", "timeout_ms": 100_000}, limits)
    assert "timed out after 0.3 s" in await err(ws, "bash", {"command": "sleep 5"}, limits)
    assert time.monotonic() - start < 3


async def test_bash_background_processes_do_not_block_or_survive(ws: Path) -> None:
    dur1, dur2 = unique_sleep(), unique_sleep()
    start = time.monotonic()
    # one background job keeps stdout open, the other does not: neither may hold the call up
    text = await ok(ws, "bash", {"command": f"sleep {dur1} & sleep {dur2} >/dev/null 2>&1 & echo started"})
    assert time.monotonic() - start < 2.5
    assert text == "started\n"
    assert await wait_gone(dur1) == []
    assert await wait_gone(dur2) == []


async def test_bash_output_cap(ws: Path) -> None:
    text = await ok(ws, "bash", {"command": "yes | head -c 10000000"})
    body, note = text.rsplit("\n", 1)
    assert note == f"[output truncated: 10000000 bytes total, first {100 * 1024} shown]"
    assert len(body) <= 100 * 1024
    assert body.startswith("y\ny\n")
    # truncation on a failing command keeps both notes
    text = await err(ws, "bash", {"command": "yes | head -c 5000; exit 2"}, ToolLimits(max_output_bytes=100))
    assert text.endswith("[output truncated: 5000 bytes total, first 100 shown]\nexit code: 2")


async def test_bash_on_progress(ws: Path) -> None:
    calls: list[float] = []
    outcome = await run_tool(ws, "bash", {"command": "sleep 2.5; echo done"}, on_progress=lambda: calls.append(1))
    assert not outcome.is_error
    assert text_of(outcome) == "done\n"
    assert 2 <= len(calls) <= 3


async def test_bash_restart_and_input_errors(ws: Path) -> None:
    assert await ok(ws, "bash", {"restart": True}) == "bash session restarted"
    assert await ok(ws, "bash", {"restart": True, "command": "touch should_not_exist"}) == "bash session restarted"
    assert not (ws / "should_not_exist").exists()
    assert "'command'" in await err(ws, "bash", {})
    assert "'command'" in await err(ws, "bash", {"restart": False})
    assert "'timeout_ms'" in await err(ws, "bash", {"command": "true", "timeout_ms": -5})
    assert "null byte" in await err(ws, "bash", {"command": "echo a\x00b"})


async def test_bash_cancellation_kills_process_group(ws: Path) -> None:
    dur = unique_sleep()
    task = asyncio.ensure_future(run_tool(ws, "bash", {"command": f"sleep {dur} & sleep {dur}"}))
    for _ in range(40):
        if len(procs_with(dur)) >= 3:  # bash -c ... and two sleeps
            break
        await asyncio.sleep(0.05)
    assert len(procs_with(dur)) == 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_gone(dur) == []


def test_path_escape_error_is_exported() -> None:
    exc = PathEscapeError("../x")
    assert str(exc) == "path escapes the workspace: ../x"
    assert isinstance(exc, ValueError)
