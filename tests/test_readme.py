"""The documentation's commands: the two the README starts with, and that
none on any page (README.md, docs/*.md) writes to a tracked file."""

import glob
import os
import re
import shlex
import subprocess
import sys

from helpers import REPO

from vnca_tf import configs
from vnca_tf.configs import overrides
from vnca_tf.evaluation import reports

SCRIPTS = ("train.py", "evaluate.py", "export.py")
PAGES = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))


def _code_blocks(page):
    """A page's fenced code blocks, in order."""
    blocks, block = [], None
    with open(page) as f:
        for line in f.read().splitlines():
            if line.startswith("```"):
                if block is None:
                    block = []
                else:
                    blocks.append("\n".join(block))
                    block = None
            elif block is not None:
                block.append(line)
    return blocks


def _commands(page):
    """(script, {flag: value}) of every script command in a page's code blocks."""
    text = "\n".join(_code_blocks(page)).replace("\\\n", " ")
    for line in text.splitlines():
        for part in line.split("&&"):
            if not any(f"python {script}" in part for script in SCRIPTS):
                continue
            words = shlex.split(part, comments=True)
            for index, word in enumerate(words[:-1]):
                if word == "python" and words[index + 1] in SCRIPTS:
                    flags = dict(
                        w[2:].partition("=")[::2] for w in words[index + 2 :] if w.startswith("--")
                    )
                    yield words[index + 1], flags


def _written_folders(script, flags):
    if script == "train.py":
        preset = (
            configs.get_preset(flags["preset"])
            if "preset" in flags
            else configs.preset_for(flags["dataset"], flags.get("model", "vnca"))
        )
        return [flags.get("model_dir") or os.path.join("runs", preset.name)]
    if script == "export.py":
        return [flags[flag] for flag in ("export_dir", "tfjs") if flag in flags]
    return [
        flags.get("output_dir")
        or reports.default_output_dir(flags.get("model_dir"), flags.get("saved_model"))
    ]


def test_the_readme_starts_with_the_main_job_and_the_ci_test_command():
    first, second = _code_blocks(PAGES[0])[:2]
    assert first.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install")
    assert "python train.py" in first
    with open(os.path.join(REPO, ".ci", "run")) as f:
        assert second == f.read().strip().splitlines()[-1]  # Last: its status is CI's.


def test_the_readme_is_read_in_ten_minutes_and_links_every_page():
    with open(PAGES[0]) as f:
        readme = f.read()
    assert len(readme.splitlines()) <= 200
    for page in PAGES[1:]:
        assert f"(docs/{os.path.basename(page)})" in readme, page


def test_no_documented_command_writes_to_a_tracked_file():
    with open(os.path.join(REPO, ".gitignore")) as f:
        ignored_folders = [line.strip() for line in f if line.strip().endswith("/")]
    commands = [(page, script, flags) for page in PAGES for script, flags in _commands(page)]
    assert {script for _, script, _ in commands} == set(SCRIPTS)
    assert any("tfjs" in flags for _, _, flags in commands)  # The demo's export.
    for page, script, flags in commands:
        for folder in _written_folders(script, flags):
            folder = os.path.normpath(folder) + "/"
            assert any(folder.startswith(ignored) for ignored in ignored_folders), (
                f"{os.path.basename(page)}: python {script} {flags} writes to {folder}, "
                "which git tracks"
            )


def test_every_documented_flag_is_one_the_script_takes():
    defined = {}
    for script in SCRIPTS:
        help_text = subprocess.run(
            [sys.executable, os.path.join(REPO, script), "--helpfull"],
            capture_output=True,
            text=True,
            cwd=REPO,
        ).stdout
        defined[script] = set(re.findall(r"^\s+--(?:\[no\])?(\w+)", help_text, re.M))
        assert "model_dir" in defined[script], help_text  # The help was read.
    commands = [(page, script, flags) for page in PAGES for script, flags in _commands(page)]
    assert any(name.startswith("config.") for _, _, flags in commands for name in flags)
    for page, script, flags in commands:
        for name, value in flags.items():
            where = f"{os.path.basename(page)}: python {script} --{name}"
            if name.startswith("config."):
                overrides.parse([f"{name[len('config.') :]}={value}"])  # Raises if stale.
            else:
                assert name.removeprefix("no") in defined[script], where
