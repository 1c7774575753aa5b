"""README.md: its commands compose and run in order (each reads only what an earlier one wrote, files its
"What a run writes" table lists), and the timing and option explanations are where users look.

The table itself is checked against a real run in tests/stages/test_pipeline.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rspnet.composition import compose

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
# options whose value is a file another command wrote
READS = ("genotype", "macro_arch", "ckpt", "sample.param_match", "predict.input", "train.class_weights")


def section(title: str) -> str:
    """The text of `## title` up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, flags=re.S | re.M)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def commands() -> list[list[str]]:
    """The `key=value` arguments of every `rspnet` command in the Commands section's shell block."""
    block = re.search(r"```bash\n(.*?)```", section("Commands"), flags=re.S).group(1)
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [re.split(r"\s#", line, maxsplit=1)[0].split() for line in joined.splitlines()]
    cmds = [line for line in lines if line[:1] == ["rspnet"]]
    # a multirun (`rspnet -m`) composes each job: its sweeps `k=a,b` are checked by their first value
    return [[_first_job(a, line[1:2] == ["-m"]) for a in line[1:] if "=" in a] for line in cmds]


def _first_job(arg: str, multirun: bool) -> str:
    key, value = arg.split("=", 1)
    return f"{key}={value.split(',')[0]}" if multirun and "[" not in value else arg


def readme_artifacts() -> dict[str, set[str]]:
    """`stage -> {file names}` from the table "What a run writes" (`checkpoints/` names a folder)."""
    rows = re.findall(r"^\| `(\w+)` \| (.*) \|$", section("Commands"), flags=re.M)
    table = {stage: set(re.findall(r"`([^`]+)`", files)) for stage, files in rows if stage != "ckpt"}
    assert {"cell_search", "macro_search", "train", "eval"} <= set(table)
    return table


def test_readme_commands_read_only_what_earlier_commands_write() -> None:
    table, written = readme_artifacts(), {}
    cmds = commands()
    assert len(cmds) >= 12
    for args in cmds:
        opts = dict(a.split("=", 1) for a in args)
        for key in READS:
            value = opts.get(key, "")
            if not value.startswith("outputs/"):
                continue
            producers = [d for d in written if value.startswith(d + "/")]
            assert producers, f"README: {key}={value} names a folder no earlier command writes"
            rel = value[len(producers[-1]) + 1 :].split("/")
            listed = table[written[producers[-1]]]
            assert rel[-1] in listed and all(f"{d}/" in listed for d in rel[:-1]), (
                f"README: {key}={value}: stage={written[producers[-1]]} does not write {'/'.join(rel)}"
            )
        if "paths.output_dir" in opts:
            written[opts["paths.output_dir"]] = opts.get("stage", "pipeline")


def test_readme_commands_compose() -> None:
    """Every option a README command passes exists (no run: the data and the inputs are not needed)."""
    for args in commands():
        compose(*[a for a in args if "..." not in a])


@pytest.mark.parametrize(
    "needle",
    [
        "11 min 16 s",  # make test, with its date
        "1 min 25 s for `CPU_ONLY=1 make install`",  # install
        "2026-11-29",
        "`ckpt=PATH`",  # ckpt vs ckpt_path, side by side
        "`ckpt_path=last\\|PATH`",
        "outputs/<stage>/<date>_<time>",
        "`checkpoint`",
        "`tags=[a,b]`",
    ],
)
def test_readme_states(needle: str) -> None:
    assert needle in README


DOC_PAGES = ["README.md", "docs/*.md", "experiments/**/*.md", "conf/**/*.md"]


def test_the_docs_relative_links_resolve() -> None:
    """Every relative markdown link of the README and the docs pages names a file of the repository (a page
    moved or renamed leaves no dangling link)."""
    pages = [p for pattern in DOC_PAGES for p in sorted(REPO.glob(pattern))]
    assert len(pages) >= 5
    dangling = [
        f"{page.relative_to(REPO)}: ({target})"
        for page in pages
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text())
        if not re.match(r"[a-z]+:|#", target) and not (page.parent / target.split("#")[0]).exists()
    ]
    assert not dangling, "dangling links: " + "; ".join(dangling)
