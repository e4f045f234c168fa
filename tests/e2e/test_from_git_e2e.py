"""From a git repository to a trained adapter: `data from-git` on this project's own repository,
then `validate`, `plan` and a quickstart-size training run on its output; and the command on a
planted repository as a user runs it: exit codes, the report, one-line errors, no torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.e2e.cli import REPO, run_cli, tiny_run_config, write_yaml

pytestmark = pytest.mark.e2e
PULLS = REPO / "tests" / "fixtures" / "from_git" / "pulls.json"


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs git and a git checkout")
def test_from_git_on_this_repository_then_validate_plan_and_train(tiny_model_dir, tmp_path):
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    out = tmp_path / "dataset"
    built = run_cli(
        [
            *("data", "from-git", str(REPO), "--out", str(out), "--rev", head.stdout.strip()),
            *("--prs", str(PULLS), "--json", "--holdout-commits", "0"),
        ],
        cwd=tmp_path,
    )  # no time split: phase 1 is HEAD's files (at a cut 10% back, README.md held a NUL byte: `binary`)
    assert built.returncode == 0, built.stderr[-2000:]
    summary = json.loads(built.stdout)
    files = {name: out / f"{name}.jsonl" for name in ("phase1_foundation", "phase2_evolution", "phase3_pr_mastery")}
    for name, path in files.items():
        lines = path.read_text().splitlines()
        assert lines, f"{name} is empty"
        assert all(json.loads(line)["training_content"].strip() for line in lines)
    paths = {json.loads(line)["path"] for line in files["phase1_foundation"].read_text().splitlines()}
    assert "src/phased_cpt/cli/commands.py" in paths and "README.md" in paths
    assert summary  # the machine-readable summary parses

    cfg = tiny_run_config(
        tiny_model_dir,
        [(name, path, 1) for name, path in files.items()],
        training={"max_steps": 2, "save_steps": 100},
        evaluation={"eval_steps": None},
    )
    config = write_yaml(tmp_path / "config.yaml", cfg)
    validated = run_cli(["validate", str(config)], cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr[-2000:]
    planned = run_cli(["plan", str(config), "--json"], cwd=tmp_path)
    assert planned.returncode == 0, planned.stderr[-2000:]
    plan = json.loads(planned.stdout)
    assert plan
    trained = run_cli(["train", str(config)], cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs").iterdir()
    for name in files:
        assert (run_dir / name / "adapter" / "adapter_model.safetensors").is_file()


def test_from_git_command_writes_the_report_and_never_imports_torch(tmp_path):
    from tests.unit.from_git.repos import FAKE_AWS_KEY, new_repo

    repo = new_repo(tmp_path / "repo", {"app.py": f"KEY = '{FAKE_AWS_KEY}'\n", ".env": "A=1\n", "logo.svg": "<svg/>\n"})
    out = tmp_path / "dataset"
    probe = (
        "import sys; from phased_cpt.cli import main; code = main(sys.argv[1:]); "
        "print('heavy:', sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules), file=sys.stderr); "
        "sys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "data", "from-git", str(repo), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "heavy: []" in done.stderr
    assert f"{out / 'from-git-report.json'}" in done.stdout
    listed = json.loads((out / "from-git-report.json").read_text())["outputs"]["phase1_foundation.jsonl"]
    assert {(e["file"], e["reason"]) for e in listed["left_out"]} == {(".env", "secret"), ("logo.svg", "data")}
    assert [(e["file"], e["rule"]) for e in listed["redacted"]] == [("app.py", "aws-access-key")]
    assert FAKE_AWS_KEY not in "".join(p.read_text() for p in out.iterdir())

    missing = run_cli(["data", "from-git", str(tmp_path / "nope"), "--out", str(out)], cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nope'}: no such directory (expected a git repository)"
    ]
