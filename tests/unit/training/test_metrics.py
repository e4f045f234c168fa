"""training/metrics.py: where metrics go (the sink and its backends)."""

from __future__ import annotations

from types import SimpleNamespace

from phased_cpt.run_dir import RunDir
from phased_cpt.training.metrics import open_sink


def test_a_read_only_run_directory_writes_no_state_config_or_metrics(tmp_path):
    run = RunDir(tmp_path, writer=False)
    run.write_state({"finished_phases": []})
    run.write_config("a: 1\n")
    sink = open_sink(run, SimpleNamespace(enabled=True), SimpleNamespace(enabled=True), {}, None)
    sink.log(1, "p1", {"loss": 1.0})
    sink.event("phase_start", phase="p1")
    sink.close()
    assert sink.backends == []
    assert list(tmp_path.iterdir()) == []
