"""docs/ is generated from the typed configs; README commands name real verbs and files."""

import re
import shlex
from pathlib import Path

from supertiny import docs
from supertiny.cli import build_parser

ROOT = Path(__file__).parents[2]


def test_docs_are_up_to_date():
    assert docs.main(["--check", "--out", str(ROOT / "docs")]) == 0, (
        "run `python -m supertiny.docs`"
    )


def test_readme_supertiny_commands_parse_and_name_existing_files():
    parser = build_parser()
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    blocks = [block.replace("\\\n", " ") for block in blocks]  # continued lines
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    # `supertiny VERB ...`, or `accelerate launch ... -m supertiny.cli VERB ...`
    lines = [line.replace("-m supertiny.cli ", "supertiny ") for line in lines]
    commands = [line[line.index("supertiny ") :] for line in lines if "supertiny " in line]
    assert len(commands) >= 4
    assert any("--student Qwen/Qwen2.5-0.5B-Instruct" in c for c in commands)  # joined lines
    for command in commands:
        argv = shlex.split(command)[1:]
        if "&&" in argv:
            argv = argv[: argv.index("&&")]
        args = parser.parse_args(argv)
        for value in vars(args).values():
            if isinstance(value, str) and value.startswith("examples/"):
                assert (ROOT / value).exists(), f"{command}: {value} does not exist"
