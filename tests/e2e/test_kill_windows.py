"""A run SIGKILLed in any window between its start and its report resumes to exactly the model an
uninterrupted run trains: every phase's adapter within 1e-5 (CPU), the same forgetting matrix and
the same finished phases. Each window is hit deterministically through a crash point
(`phased_cpt.crash_points`); LoRA dropout is on, so every random stream must match too.

One run is killed in every window in turn, in the order a run reaches them: each resume is
killed in the next window, the last one finishes. After each kill the test checks that the run
died where it was meant to (the files and state the window leaves behind), and at the end that
the result is the uninterrupted run's. (A chain: one process start per window instead of two.)
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from safetensors.torch import load_file

from phased_cpt.cli import main
from phased_cpt.crash_points import CRASH_AT_ENV
from tests.conftest import bundled_texts, write_jsonl
from tests.e2e.cli import run_cli, tiny_run_config, write_yaml

pytestmark = pytest.mark.e2e
PHASES = ("phase1_foundation", "phase2_evolution")
P1, P2 = PHASES

WINDOWS = [
    # (window, crash point)
    ("data preparation", f"data_prepared:{P2}"),
    ("during a checkpoint save", f"checkpoint_written:{P1}/2"),
    ("phase-end evaluation", f"phase_evaluation:{P1}"),
    ("forgetting-matrix row saved, phase_end not logged", f"forgetting_row:{P1}"),
    ("adapter written, state.json not updated", f"state_update:{P1}"),
    ("after phase_start, before the first checkpoint", f"phase_start:{P2}"),
    ("during the report", "report"),
]


def kill_config(model_dir: Path, work: Path) -> Path:
    p1 = write_jsonl(work / "data" / "p1.jsonl", bundled_texts(P1, 8))
    p2 = write_jsonl(work / "data" / "p2.jsonl", bundled_texts(P2, 12))
    cfg = tiny_run_config(
        model_dir,
        [(P1, p1, 1), (P2, p2, 1)],
        training={
            "save_steps": 2,
            "save_total_limit": 2,
            "logging_steps": 1,
            "lora": {"r": 4, "alpha": 8, "dropout": 0.1},
        },
        context={"max_tokens": 64, "overlap_tokens": 8},
        data={"eval_ratio": 0.25, "cache_dir": str(work / "cache")},
        evaluation={"eval_steps": 2},
        tensorboard={"enabled": False},
    )
    return write_yaml(work / "config.yaml", cfg)


def the_run(work: Path) -> Path | None:
    runs = list((work / "outputs").iterdir()) if (work / "outputs").is_dir() else []
    assert len(runs) <= 1, runs
    return runs[0] if runs else None


def finished(run_dir: Path) -> list[str]:
    state = run_dir / "state.json"
    return [p["name"] for p in json.loads(state.read_text())["finished_phases"]] if state.is_file() else []


def events(run_dir: Path, name: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("event") == name]


def check_left_behind(window: str, work: Path) -> None:
    """What the run killed in `window` must have left: proof that it died there."""
    run_dir = the_run(work)
    if window == "data preparation":
        assert run_dir is None  # the run directory is made after every phase's data is prepared
        return
    assert run_dir is not None
    if window == "during a checkpoint save":
        assert (run_dir / P1 / "checkpoint-2").is_dir() and not (run_dir / P1 / "checkpoint-2" / "COMPLETE").exists()
    elif window in (
        "phase-end evaluation",
        "forgetting-matrix row saved, phase_end not logged",
        "adapter written, state.json not updated",
    ):
        assert (run_dir / P1 / "adapter" / "adapter_model.safetensors").is_file() and finished(run_dir) == []
        assert bool(events(run_dir, "phase_end")) == (window == "adapter written, state.json not updated")
    elif window == "after phase_start, before the first checkpoint":
        assert finished(run_dir) == [P1] and [e["phase"] for e in events(run_dir, "phase_start")][-1] == P2
        assert not list((run_dir / P2).glob("checkpoint-*"))
    elif window == "during the report":
        assert finished(run_dir) == list(PHASES) and not (run_dir / "eval" / "report.md").exists()


def outputs(run_dir: Path) -> dict:
    forgetting = json.loads((run_dir / "eval" / "forgetting.json").read_text())
    return {
        "adapters": {p: load_file(run_dir / p / "adapter" / "adapter_model.safetensors") for p in PHASES},
        "finished": finished(run_dir),
        "forgetting": [[r["after"], {c: v["perplexity"] for c, v in r["results"].items()}] for r in forgetting["rows"]],
        "report": (run_dir / "eval" / "report.md").is_file(),
    }


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory) -> dict:
    """The uninterrupted run's outputs."""
    work = tmp_path_factory.mktemp("uninterrupted")
    done = run_cli(["train", str(kill_config(tiny_model_dir, work))], cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    return outputs(the_run(work))


def assert_same_result(result: dict, reference: dict) -> None:
    for phase in PHASES:
        ref = reference["adapters"][phase]
        diff = max((result["adapters"][phase][k] - ref[k]).abs().max().item() for k in ref)
        assert diff <= 1e-5, f"{phase}: adapter differs from the uninterrupted run's by {diff:.2e}"
    assert result["finished"] == reference["finished"] == list(PHASES)
    assert [row[0] for row in result["forgetting"]] == [row[0] for row in reference["forgetting"]]
    for got, want in zip(result["forgetting"], reference["forgetting"], strict=True):
        assert got[1] == pytest.approx(want[1], rel=1e-5), got[0]
    assert result["report"]


def test_a_run_killed_in_every_window_resumes_to_the_uninterrupted_result(reference, tiny_model_dir, tmp_path):
    work = tmp_path
    config = kill_config(tiny_model_dir, work)
    stderr = []
    for window, point in WINDOWS:
        resume = ["--resume"] if the_run(work) is not None else []
        killed = run_cli(["train", str(config), *resume], cwd=work, env={CRASH_AT_ENV: point})
        stderr.append(killed.stderr)
        assert killed.returncode == -signal.SIGKILL, f"{window}: not killed at {point}\n{killed.stderr[-3000:]}"
        check_left_behind(window, work)
        if the_run(work) is not None:
            assert (the_run(work) / "run.lock").is_file()  # left by the killed process: the resume takes it over
        if window == "after phase_start, before the first checkpoint":  # and the kill tore a line (issue 12.11)
            with open(the_run(work) / "metrics.jsonl", "a") as f:
                f.write('{"step": 99, "phase": "phase2_evol')
    resumed = run_cli(["train", str(config), "--resume"], cwd=work)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "metrics.jsonl:" in "".join(stderr) and "the last line is torn" in "".join(stderr)

    assert_same_result(outputs(the_run(work)), reference)

    with open(the_run(work) / "metrics.jsonl", "a") as f:  # torn again: the report still reads the run
        f.write('{"event": "sess')
    assert main(["report", str(the_run(work))]) == 0


def test_a_latest_checkpoint_without_its_optimizer_state_falls_back_to_the_previous_one(
    reference, tiny_model_dir, tmp_path
):
    """Issue 12.2: resuming from a checkpoint that lost optimizer.pt would restart the optimizer
    and the LR schedule; the previous complete checkpoint is used instead, with a warning."""
    config = kill_config(tiny_model_dir, tmp_path)
    killed = run_cli(["train", str(config)], cwd=tmp_path, env={CRASH_AT_ENV: f"phase_evaluation:{P1}"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    checkpoints = sorted((the_run(tmp_path) / P1).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(checkpoints) == 2
    (checkpoints[-1] / "optimizer.pt").unlink()
    resumed = run_cli(["train", str(config), "--resume"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_result(outputs(the_run(tmp_path)), reference)
    warning = f"{checkpoints[-1].name} is not usable: optimizer.pt is missing; falling back to {checkpoints[0].name}"
    assert warning in resumed.stderr
