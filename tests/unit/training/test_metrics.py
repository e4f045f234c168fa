"""training/metrics.py: where metrics go (the sink and its backends)."""

from __future__ import annotations

import json

from phased_cpt.config import RunConfig
from phased_cpt.run_dir import RunDir
from phased_cpt.training.metrics import BACKENDS, JsonlBackend, TensorBoardBackend, WandbBackend, open_sink
from phased_cpt.training.resume import MAY_CHANGE
from tests.conftest import metrics_config


def test_the_sink_opens_the_backends_their_sections_turn_on(tmp_path):
    sink = open_sink(RunDir(tmp_path), metrics_config(tensorboard=False, wandb=False), None)
    assert [type(b) for b in sink.backends] == [JsonlBackend]
    sink.close()
    sink = open_sink(RunDir(tmp_path), metrics_config(tensorboard=True, wandb=False), None)
    assert [type(b) for b in sink.backends] == [JsonlBackend, TensorBoardBackend]
    sink.close()


def test_every_backend_section_is_a_config_section_a_resume_may_change():
    sections = [backend.section for backend in BACKENDS if backend.section]
    assert sections == ["tensorboard", "wandb"]
    for section in sections:
        assert section in RunConfig.model_fields
        assert f"{section}.*" in MAY_CHANGE


def test_a_resumed_run_continues_its_wandb_run(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = metrics_config(tensorboard=False, wandb=True)
    first = open_sink(RunDir(tmp_path), cfg, None)
    assert [type(b) for b in first.backends] == [JsonlBackend, WandbBackend]
    run_id = first.wandb_run_id
    first.close()
    assert json.loads((tmp_path / "state.json").read_text()) == {"finished_phases": [], "wandb_run_id": run_id}
    resumed = open_sink(RunDir(tmp_path), cfg, 0)
    assert resumed.wandb_run_id == run_id
    resumed.close()
    wandb.teardown()
