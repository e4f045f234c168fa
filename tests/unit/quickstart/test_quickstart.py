"""The line `train` prints when it runs the embedded quickstart config: what actually runs."""

from pathlib import Path

from phased_cpt.quickstart import DATA_DIR, describe_quickstart

MODEL = Path("/cache/quickstart-tiny-llama-abc")
BUNDLED = {name: DATA_DIR / f"{name}.jsonl" for name in ("phase1_foundation", "phase2_evolution", "phase3_pr_mastery")}


def test_the_plain_quickstart_says_tiny_model_and_bundled_data():
    line = describe_quickstart(str(MODEL), BUNDLED, MODEL)
    assert line == (
        "no config given: the embedded quickstart config, the tiny model built offline, 3 phase(s) on "
        "the bundled sample data"
    )


def test_phases_pointed_at_your_files_are_named_as_yours():
    files = BUNDLED | {"phase1_foundation": Path("/home/me/code.jsonl")}
    line = describe_quickstart("/models/qwen", files, MODEL)
    assert "model /models/qwen" in line and "tiny model" not in line
    assert "your files: phase1_foundation <- /home/me/code.jsonl; the bundled sample data for the other phases" in line
    mine = {"p": Path("/home/me/code.jsonl")}
    assert describe_quickstart(str(MODEL), mine, MODEL).endswith("1 phase(s) on your files: p <- /home/me/code.jsonl")
