"""Every README command block runs, as written, in what a fresh clone looks like after `make demo`.

Why: a newcomer pastes the README's blocks in order (issue 23 §1); an example naming a file a clone lacks, or
an output the tool no longer prints, is the first thing they meet. This test pastes them for them.

The README's convention (stated in README.md, "How to read the examples"):

- A ```` ```sh ```` block holds commands to paste, nothing else (no `$ ` prompts). They run in order, each block
  in the clone's top folder, after the blocks above it (whose files they may use).
- A command expected to fail ends with `# exits N` (N its exit code): the test checks that exit code, and every
  other command must exit 0 (each block runs under `set -e`).
- A ```` ```text ```` block right after a `sh` block is what that block prints (stdout and stderr together, on a
  100-column terminal without colours). Other fences (```` ``` ````, ```` ```python ````) are not run here (the
  `## Python API` section is doctested by its own test).
- Setup lines that install (`make ...`, `pip install ...`) are not run: the suite's own venv (`make test`) holds
  every extra; they are listed by `test_setup_lines_are_the_ones_skipped`. A block whose commands need an
  optional package that is missing here (torch is installed by `make test` only where a CPU build is on disk) is
  skipped with that reason, and so is its output's comparison.

The clone: a temporary folder holding `sample_models/` (a symbolic link to this checkout's, which nothing
writes) and a `.venv/bin/` of small scripts standing for the venv `make demo` makes: `lstm-inspect` and `python`
run this test's interpreter (with this checkout first on PYTHONPATH), `activate` puts that folder first on PATH.

Outputs are compared after a normalization applied to both sides, for what differs between machines and runs:
trailing spaces; the temporary folder's path; the version after `tf_keras`, `Keras`, `onnxruntime`, `torch`,
`onnx` (the installed release); numbers in e-notation below 1e-4 (float32 rounding differs between CPUs) and the
|Δ| per step bars they draw; durations (`0.12 s`, `35 ms`, `7 µs`).

`python tests/test_readme_blocks.py --update` (or `make readme`) runs every block and rewrites each output block
with what it printed, unnormalized: run it after changing what a command prints, then read the diff.
The blocks take about 40 s of CPU, 21 s of it the three that run `verify` (Keras's import and build); on this
2-core machine shared with other jobs (load 8) that was 110 s of wall time.
"""

from __future__ import annotations

import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

COLUMNS = 100
SETUP = re.compile(r"^\s*(make\s|(\S*/)?pip3? install\s)")
EXITS = re.compile(r"^(?P<cmd>.*?)\s*#\s*exits (?P<code>\d+)\s*$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)

# What a block needs beyond the core, by what it types: the modules whose absence skips it, and the install line
# the README must give before it (`make demo` installs the core only).
NEEDS = (
    (re.compile(r"lstm-inspect verify\b"), ("tensorflow", "tf_keras", "keras"), "pip install -e '.[keras]'"),
    (re.compile(r"--to onnx|onnxruntime"), ("onnx", "onnxruntime"), "pip install -e '.[onnx,pytorch]'"),
    (re.compile(r"--to pytorch|import torch"), ("safetensors", "torch"), "pip install torch "),
    (re.compile(r"lstm-inspect plot\b"), ("matplotlib",), "pip install -e '.[plot]'"),
)


@dataclass
class Block:
    line: int            # 1-based line of the opening fence in README.md
    commands: str        # the sh block's text
    output: tuple[int, int] | None  # the following text block's body span in README.md, if any

    def needs(self) -> list[str]:
        return [m for pattern, modules, _ in NEEDS if pattern.search(self.commands) for m in modules]


def blocks(text: str) -> list[Block]:
    """The sh blocks in order, each with the span of the text block right after it (only blank lines between)."""
    fences = list(FENCE.finditer(text))
    found = []
    for k, fence in enumerate(fences):
        if fence.group("lang") != "sh":
            continue
        output = None
        if k + 1 < len(fences):
            nxt = fences[k + 1]
            if nxt.group("lang") == "text" and not text[fence.end():nxt.start()].strip():
                output = nxt.span("body")
        found.append(Block(text.count("\n", 0, fence.start()) + 1, fence.group("body"), output))
    return found


def script(block: Block) -> str:
    """The block as a bash script: setup lines skipped, `# exits N` lines checked, everything else under set -e."""
    lines = ["set -e"]
    for raw in block.commands.splitlines():
        if SETUP.match(raw):
            lines.append(f"# not run: the venv of the suite has what it installs: {raw.strip()}")
            continue
        expected = EXITS.match(raw)
        if expected is None:
            lines.append(raw)
            continue
        cmd, code = expected.group("cmd"), expected.group("code")
        said = shlex.quote(cmd)
        lines.append(f"if {cmd}; then echo \"README: exit 0, expected {code}: \"{said} >&2; exit 97; "
                     f"else rc=$?; [ $rc -eq {code} ] || {{ echo \"README: exit $rc, expected {code}: \"{said} >&2; "
                     f"exit 97; }}; fi")
    return "\n".join(lines) + "\n"


def make_clone(where: Path) -> dict[str, str]:
    """The clone's files and the venv's commands (see the module docstring); returns the environment to run in."""
    (where / "sample_models").symlink_to(ROOT / "sample_models", target_is_directory=True)
    bin_dir = where / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = shlex.quote(sys.executable)
    for name, body in (("python", f'exec {python} "$@"'),
                       ("lstm-inspect", f'exec {python} -m lstm_inspect.cli "$@"')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (bin_dir / "activate").write_text(f'PATH={shlex.quote(str(bin_dir))}:"$PATH"; export PATH\n')
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LSTM_INSPECT_", "PYTHON", "FORCE_COLOR", "CLICOLOR"))}
    # Each block runs in its own bash, as in one shell where the first block's `. .venv/bin/activate` ran.
    env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               COLUMNS=str(COLUMNS), LINES="50", TERM="dumb", NO_COLOR="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    return env


def run(block: Block, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script(block)], cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=300)


def printed(text: str, cwd: Path) -> str:
    """What a block printed as the README shows it: the temporary folder's path dropped, no trailing spaces."""
    text = text.replace(f"{cwd}/", "").replace(str(cwd), ".")
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n") + "\n"


def normalized(text: str) -> str:
    """Both sides of a comparison, with what differs between machines and runs replaced (module docstring)."""
    text = "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")
    text = re.sub(r"\b(tf_keras|Keras|keras|onnxruntime|torch|onnx) \d+(\.\d+)+(\+\w+)?", r"\1 <version>", text)
    text = re.sub(r"\b\d(\.\d+)?e-(0[5-9]|[1-9]\d)\b", "<tiny>", text)
    text = re.sub(r"[▁▂▃▄▅▆▇█]+", "<bars>", text)
    return re.sub(r"\b\d+(\.\d+)? ?(s|ms|µs)\b", "<time>", text)


def missing(modules: list[str]) -> list[str]:
    return [m for m in dict.fromkeys(modules) if find_spec(m) is None]


def run_all(update: bool) -> list[str]:
    """Runs every block in one fresh clone; returns the problems (and with update, rewrites the outputs)."""
    text = README.read_text(encoding="utf-8")
    problems: list[str] = []
    replacements: list[tuple[tuple[int, int], str]] = []
    with tempfile.TemporaryDirectory(prefix="readme-clone-") as tmp:
        cwd = Path(tmp).resolve()
        env = make_clone(cwd)
        for block in blocks(text):
            absent = missing(block.needs())
            if absent:
                print(f"README.md:{block.line}: skipped, {', '.join(absent)} not installed", file=sys.stderr)
                continue
            started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            done = run(block, cwd, env)
            used = resource.getrusage(resource.RUSAGE_CHILDREN)
            print(f"README.md:{block.line}: {time.perf_counter() - started:.1f} s, CPU "
                  f"{used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime:.1f} s", file=sys.stderr)
            shown = printed(done.stdout, cwd)
            if done.returncode != 0:
                problems.append(f"README.md:{block.line}: the block exited {done.returncode}:\n{shown}")
                continue
            if block.output is None:
                continue
            if update:
                replacements.append((block.output, shown))
            elif normalized(shown) != normalized(text[slice(*block.output)]):
                problems.append(f"README.md:{block.line}: the output differs from the block after it; it prints\n"
                                f"{shown}")
    if update:
        for (start, end), shown in sorted(replacements, reverse=True):
            text = text[:start] + shown + text[end:]
        README.write_text(text, encoding="utf-8")
    return problems


# ------------------------------------------------------------------------------------------------------- tests


def test_every_command_block_runs_and_prints_what_the_readme_shows() -> None:
    problems = run_all(update=False)
    assert not problems, "\n\n".join(problems) + "\n\n(python tests/test_readme_blocks.py --update rewrites outputs)"


def test_blocks_follow_the_convention() -> None:
    """Commands to paste have no prompts and name only files a clone has or an earlier block makes; the tool is
    called one way (`lstm-inspect` after `. .venv/bin/activate`, which the first block runs)."""
    text = README.read_text(encoding="utf-8")
    found = blocks(text)
    assert found and ". .venv/bin/activate" in found[0].commands
    for block in found:
        for raw in block.commands.splitlines():
            assert not raw.startswith("$ "), f"README.md:{block.line}: a prompt in a block to paste: {raw}"
            assert "../shared" not in raw and ".venv/bin/lstm-inspect" not in raw, f"README.md:{block.line}: {raw}"
        for name in re.findall(r"sample_models/[\w.-]+", block.commands):
            assert (ROOT / name).exists(), f"README.md:{block.line}: {name} is not in the repository"
    for fence in FENCE.finditer(text):  # a command shown anywhere else would not be run by this test
        if fence.group("lang") != "sh":
            line = text.count("\n", 0, fence.start()) + 1
            shown = re.search(r"^(\$ |lstm-inspect )", fence.group("body"), re.M)
            assert not shown, f"README.md:{line}: a command outside a sh block"
            assert "../shared/realworld/" not in fence.group("body"), f"README.md:{line}"


def test_each_extra_is_installed_before_the_first_block_that_needs_it() -> None:
    """A reader who ran `make demo` (the core only) meets each extra's pip line before the command that needs it."""
    seen = ""
    for block in blocks(README.read_text(encoding="utf-8")):
        for pattern, _, install in NEEDS:
            use = pattern.search(block.commands)
            if use:
                before = seen + block.commands[:use.start()]
                assert install in before, f"README.md:{block.line}: needs `{install.strip()}` before it"
        seen += block.commands


def test_setup_lines_are_the_ones_skipped() -> None:
    """The lines the suite does not run, because they install what its venv already has."""
    skipped = [raw.split("#")[0].strip() for b in blocks(README.read_text(encoding="utf-8"))
               for raw in b.commands.splitlines() if SETUP.match(raw)]
    assert skipped == ["make demo", "pip install -e '.[keras]'", "pip install -e '.[plot]'",
                       "pip install -e '.[onnx,pytorch]'",
                       "pip install torch --index-url https://download.pytorch.org/whl/cpu", "make test"], skipped


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/test_readme_blocks.py --update   (rewrites README.md's output blocks)")
    left = run_all(update=True)
    print("\n\n".join(left) or "README.md: every output block rewritten from a real run")
    sys.exit(1 if left else 0)
