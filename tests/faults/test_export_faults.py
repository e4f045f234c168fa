"""`export` on a disk that fills mid-export: a real small filesystem whose space runs out while
llama.cpp's converter writes the GGUF (the merged model fit). `--out` is left as it was, with no
staging leftover and one error line: a half-written GGUF is never found where a complete one
would be. (An earlier export surviving a failed replacement is `swap_into_place`, merge's, tested
in test_merge_faults.py.)"""

from __future__ import annotations

import pytest

from phased_cpt.errors import UserError
from phased_cpt.export.flow import export_adapter
from phased_cpt.export.target import ExportOptions, Source
from tests.conftest import save_random_adapter, tiny_model_config
from tests.faults.conftest import small_filesystem

pytestmark = pytest.mark.fault


@pytest.fixture(scope="module")
def source(tiny_sentencepiece_llama_dir, tmp_path_factory) -> Source:
    adapter = save_random_adapter(tiny_sentencepiece_llama_dir, tmp_path_factory.mktemp("adapter") / "a", seed=4)
    return Source(model=tiny_model_config(tiny_sentencepiece_llama_dir), adapter_dir=adapter, label="phase1")


def test_a_disk_filling_during_conversion_leaves_no_gguf(source, tiny_sentencepiece_llama_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    merged_bytes = (tiny_sentencepiece_llama_dir / "model.safetensors").stat().st_size
    # Room for the merged model and its tokenizer, not for an f32 GGUF of the same size beside it.
    with small_filesystem(tmp_path / "disk", merged_bytes + merged_bytes // 2) as disk:
        with pytest.raises(UserError) as err:
            export_adapter(source, "gguf", disk / "out", ExportOptions(gguf_type="f32"))
        assert "\n" not in str(err.value) and "nothing at" in str(err.value)
        assert list(disk.iterdir()) == []  # no --out, no staging directory, no partial .gguf
