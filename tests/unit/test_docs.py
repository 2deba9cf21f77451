"""The docs' rules that need nothing run: every shell block of the guides is run by a test or says why it
cannot, the README's commands are the executed pages', and every environment variable cvops reads is named
where the reference is generated from."""

import re

from tests.docs import DOCS, EXECUTED, NOT_RUN, REPO, RUN_BY, shell_blocks


def guide_pages() -> list[str]:
    return sorted(str(p.relative_to(DOCS)) for folder in EXECUTED for p in (DOCS / folder).glob("*.md"))


def test_every_shell_block_of_the_guides_runs_in_a_test_or_says_why_it_cannot() -> None:
    assert set(RUN_BY) <= set(guide_pages())
    for page in guide_pages():
        for block in shell_blocks(DOCS / page):
            assert block.language == "bash", f"{block}: shell blocks are ```bash (output: ```text)"
            assert page in RUN_BY or block.text.startswith(NOT_RUN), f"{block}: no test runs it, and it says not why"
            if block.text.startswith(NOT_RUN):
                assert len(block.text.splitlines()[0]) > len(NOT_RUN) + 5, f"{block}: say why it cannot run"


def command(line: str) -> str:
    """A shell line without its trailing comment, nor the `&` that runs it in the background."""
    return line.split("  #")[0].strip().removesuffix("&").strip()


def executed_lines() -> set[str]:
    return {
        command(line)
        for page in RUN_BY
        for block in shell_blocks(DOCS / page)
        if block.runs
        for line in block.text.splitlines()
    }


def test_the_readme_shows_commands_the_executed_pages_run() -> None:
    readme = [b for b in shell_blocks(REPO / "README.md") if b.runs]
    shown = [command(line) for b in readme for line in b.text.splitlines() if command(line) and line[0] != "#"]
    quick_start = {line for line in shown if line.startswith("make ")}  # make test: CI; make demo: by hand (README)
    assert [line for line in shown if line not in quick_start and line not in executed_lines()] == []


def test_a_new_projects_readme_names_the_commands_of_your_own_images() -> None:
    template = (REPO / "cvops" / "project_template" / "README.md").read_text()
    commands = [command(line) for line in template.splitlines() if line.startswith("    cvops ")]
    assert commands and [c for c in commands if c not in executed_lines()] == []


def test_every_environment_variable_in_env_py_has_its_meaning() -> None:
    source = (REPO / "cvops" / "env.py").read_text().splitlines()
    named = [line for line in source if re.match(r"^[A-Z_]+_ENV\s*=\s*\"", line)]
    assert named and [line for line in named if not re.search(r'"\s+#\s+\S', line)] == []


def test_every_command_shows_examples_in_its_help() -> None:  # the CLI reference is their --help
    import click

    from cvops.cli import main

    def leaves(command: click.Command, name: str) -> list[tuple[str, click.Command]]:
        if isinstance(command, click.Group):
            return [leaf for sub, c in command.commands.items() for leaf in leaves(c, f"{name} {sub}")]
        return [(name, command)]

    assert [name for name, command in leaves(main, "cvops") if "Example" not in (command.help or "")] == []
