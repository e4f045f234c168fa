"""evaluation/report.py: the run report and the plots it links."""

from __future__ import annotations

import math

from phased_cpt.evaluation.forgetting import ForgettingMatrix
from phased_cpt.evaluation.report import build_report
from phased_cpt.run_dir import RunDir
from tests.conftest import write_run


def test_report_redraws_every_plot_it_links(tmp_path):
    """`phased-cpt report` redraws forgetting.png and learning.png, not only curves.png, so
    report.md never links a missing image (issue 19 item 10)."""
    import re

    from phased_cpt.config import GENERAL_COLUMN
    from phased_cpt.evaluation.report import write_report
    from phased_cpt.run_dir import RunDir

    run = RunDir(write_run(tmp_path / "run", tmp_path, ["p1"], ["p1"]))
    cell = lambda loss: {"loss": loss, "perplexity": math.exp(loss), "target_tokens": 10}  # noqa: E731
    matrix = ForgettingMatrix(["p1", GENERAL_COLUMN])
    matrix.add_row("base", {"p1": cell(3.0), GENERAL_COLUMN: cell(2.0)})
    matrix.add_row("p1", {"p1": cell(1.0), GENERAL_COLUMN: cell(2.5)})
    matrix.save(run.forgetting_file)
    (run.eval_dir / "forgetting.png").unlink()
    report = write_report(run).read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert sorted(linked) == ["curves.png", "forgetting.png", "learning.png"]
    for name in linked:
        assert (run.eval_dir / name).read_bytes()[:4] == b"\x89PNG", name
    (run.eval_dir / "forgetting.json").write_text('{"columns": ')  # damaged: named in the report, no link
    report = write_report(run).read_text()
    assert "forgetting.json is damaged" in report and "(forgetting.png)" not in report


def test_a_damaged_forgetting_matrix_does_not_stop_the_report(finished_run):
    (finished_run / "eval").mkdir()
    (finished_run / "eval" / "forgetting.json").write_text('{"columns": ')
    report = build_report(RunDir(finished_run))
    assert "(not shown: " in report and "forgetting.json is damaged" in report
