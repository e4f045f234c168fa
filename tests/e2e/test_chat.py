"""`phased-cpt chat` end to end on runs trained by the pipeline: the REPL through a pty, scripted
comparison, run discovery, base answers free of the adapter, and EOS learned from short documents."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.conftest import bundled_texts, write_jsonl
from tests.e2e.cli import REPO, assert_user_error, phased_cpt_command, run_cli, tiny_run_config, train_run

pytestmark = pytest.mark.e2e

PROMPT = "def main():"
STATS = re.compile(
    r"\[(base|ft)\] prompt (\d+) tok \| generated (\d+) tok \| ([\d.]+) s \| ([\d.]+) tok/s \| stop: (eos|max_tokens)"
)
SENTENCES = [
    "the cat sat on the mat.",
    "a dog ran in the park.",
    "we like green apples.",
    "she reads old books.",
    "birds sing at dawn.",
]


@pytest.fixture(scope="module")
def chat_run(tiny_model_dir, tmp_path_factory) -> Path:
    """Two phases, a few steps each, a checkpoint every 3 steps."""
    work = tmp_path_factory.mktemp("chat")
    p1 = write_jsonl(work / "data" / "p1.jsonl", bundled_texts("phase1_foundation", 16))
    p2 = write_jsonl(work / "data" / "p2.jsonl", bundled_texts("phase2_evolution", 16))
    cfg = tiny_run_config(
        tiny_model_dir,
        [("phase1_foundation", p1, 1), ("phase2_evolution", p2, 1)],
        training={"max_steps": 6, "save_steps": 3, "learning_rate": 1e-2},
    )
    return train_run(work, cfg)


@pytest.fixture(scope="module")
def eos_run(tiny_model_dir, tmp_path_factory) -> Path:
    """200 short documents, each ending in EOS: enough for the tiny model to learn to stop."""
    work = tmp_path_factory.mktemp("eos")
    short = write_jsonl(work / "data" / "short.jsonl", SENTENCES * 40)
    cfg = tiny_run_config(
        tiny_model_dir,
        [("short_docs", short, 2)],
        training={"learning_rate": 1e-2, "micro_batch_size": 8, "save_steps": 1000},
    )
    return train_run(work, cfg)


def chat(args: list[str], cwd: Path) -> tuple[object, list[dict]]:
    """Run `phased-cpt chat ARGS --out results.jsonl`; return the process and the parsed results."""
    out = cwd / "results.jsonl"
    out.unlink(missing_ok=True)
    result = run_cli(["chat", *args, "--out", str(out)], cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, [json.loads(line) for line in out.read_text().splitlines()]


# --- the REPL, as a user drives it -----------------------------------------------------------


def spawn_chat(cwd: Path, *args: str) -> pexpect.spawn:
    command = phased_cpt_command()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2", "TERM": "dumb"}
    child = pexpect.spawn(
        command[0],
        [*command[1:], "chat", *args],
        cwd=str(cwd),
        env=env,
        encoding="utf-8",
        timeout=120,
        dimensions=(50, 400),
    )
    child.expect_exact(">>> ")
    return child


def send(child: pexpect.spawn, line: str) -> list[str]:
    """Type `line`; return the lines printed before the next prompt (without the echo)."""
    child.sendline(line)
    child.expect_exact(">>> ")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", child.before).replace("\r", "")
    lines = text.split("\n")
    assert lines[0].strip() == line, lines
    return [ln for ln in lines[1:] if ln.strip()]


def stats(lines: list[str]) -> list[dict]:
    found = [STATS.search(ln) for ln in lines]
    return [
        {
            "side": m[1],
            "prompt": int(m[2]),
            "generated": int(m[3]),
            "seconds": float(m[4]),
            "tokens_per_s": float(m[5]),
            "stop": m[6],
        }
        for m in found
        if m
    ]


def test_repl_session_through_a_pty(chat_run):
    child = spawn_chat(chat_run.parent.parent)  # no argument: the newest run under ./outputs
    assert "phase: phase2_evolution | mode: compare base vs ft" in child.before

    assert send(child, "/set temperature 0.7") == ["temperature = 0.7"]
    assert send(child, "/set max_tokens 32") == ["max_tokens = 32"]
    (params,) = send(child, "/params")
    assert "temperature=0.7 " in params and "max_tokens=32 " in params

    lines = send(child, PROMPT)
    assert lines[0] == "--- base model (adapter disabled) ---"
    assert "--- fine-tuned (phase2_evolution) ---" in lines
    both = stats(lines)
    assert [s["side"] for s in both] == ["base", "ft"]
    assert both[0]["prompt"] == both[1]["prompt"] > 0
    for s in both:
        assert 1 <= s["generated"] <= 32 and s["tokens_per_s"] > 0
        assert s["generated"] == 32 if s["stop"] == "max_tokens" else s["stop"] == "eos"

    assert send(child, "/compare") == ["mode: ft only"]
    lines = send(child, PROMPT)
    assert [s["side"] for s in stats(lines)] == ["ft"]

    (switched,) = send(child, "/phase phase1_foundation")
    assert switched.startswith("phase: phase1_foundation (") and switched.endswith("phase1_foundation/adapter)")
    lines = send(child, PROMPT)
    assert lines[0] == "--- fine-tuned (phase1_foundation) ---" and len(stats(lines)) == 1

    assert send(child, "/bogus") == ["error: unknown command /bogus (/help lists the commands)"]
    assert send(child, "/set top_p 7") == ["error: top_p must be a number in (0, 1], got '7'"]
    assert send(child, "/phase nope") == ["error: unknown phase 'nope'; one of: phase1_foundation, phase2_evolution"]
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Traceback" not in child.before


def test_eof_at_the_prompt_exits_0(chat_run):
    child = spawn_chat(chat_run.parent.parent)
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert "Traceback" not in child.before


def test_ctrl_c_at_the_prompt_exits_0(chat_run):
    child = spawn_chat(chat_run.parent.parent)
    # CPython's readline shows the prompt a moment before it waits for input; a SIGINT that
    # lands in between is only seen with the next key or signal. So: Ctrl-C until the process
    # ends (a user presses it again too); every outcome must still be a clean exit 0.
    for _ in range(5):
        child.sendintr()
        if child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=15) == 0:
            break
    else:
        raise AssertionError(f"chat did not end after 5 Ctrl-C at the prompt: {child.before[-2000:]}")
    child.close()
    assert child.exitstatus == 0, child.before
    assert "Traceback" not in child.before


def test_ctrl_c_during_an_answer_stops_it_and_returns_to_the_prompt(chat_run):
    child = spawn_chat(chat_run.parent.parent)
    assert send(child, "/set max_tokens 20000") == ["max_tokens = 20000"]
    assert send(child, "/base") == ["mode: base only"]
    child.sendline(PROMPT)
    child.expect_exact("--- base model (adapter disabled) ---")
    child.expect(r"\S")  # the answer is streaming: some text after the header
    child.sendintr()
    child.expect_exact("[interrupted]")
    child.expect_exact(">>> ")
    assert STATS.search(child.before) is None  # stopped: no stats line for a cut answer
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and "Traceback" not in child.before


# (line the loader prints, seconds after it): ten moments of loading, from the imports of torch
# and transformers to the adapters. A line's moment (delay 0) is the same on any machine; a moment
# later than that depends on the machine's speed (on a fast idle machine 2.5 s after `adapter:` is
# already at the prompt), so those points check the outcome of whichever moment they hit.
LOADING_POINTS = [
    ("base model: ", 0.0),
    ("adapter: ", 0.0),
    ("adapter: ", 0.1),
    ("adapter: ", 0.3),
    ("adapter: ", 0.8),
    ("adapter: ", 1.5),
    ("adapter: ", 2.5),
    ("loaded ", 0.0),
    ("loaded ", 0.02),
    ("loaded ", 0.1),
]


@pytest.mark.parametrize(("line", "delay"), LOADING_POINTS)
def test_ctrl_c_while_loading_exits_130_with_one_line(chat_run, line, delay):
    """Before the prompt, Ctrl-C stops chat: exit 130 and the line `interrupted`, never a
    traceback and never a prompt that waits (transformers' lazy imports turn a KeyboardInterrupt
    into an import error, which optional imports used to swallow). A moment late enough that the
    prompt is already up must give the prompt's outcome, exit 0."""
    command = phased_cpt_command()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2", "TERM": "dumb"}
    child = pexpect.spawn(
        command[0],
        [*command[1:], "chat"],
        cwd=str(chat_run.parent.parent),
        env=env,
        encoding="utf-8",
        timeout=120,
        dimensions=(50, 400),
    )
    child.expect_exact(line)
    child.expect_exact("\n")
    time.sleep(delay)
    child.sendintr()
    for _ in range(5):
        if child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=30) == 0:
            break
        # Not ended (child.before keeps all output since the loader's line): only the prompt's
        # readline race explains that (see the test above), so the prompt must be up; the user
        # presses Ctrl-C again.
        assert ">>> " in child.before, child.before[-2000:]
        child.sendintr()
    else:
        raise AssertionError(f"chat did not end after 5 Ctrl-C: {child.before[-2000:]}")
    child.close()
    output = child.before.replace("\r", "")
    assert "Traceback" not in output, output
    if ">>> " in output:  # the prompt came first: Ctrl-C at the prompt
        assert child.exitstatus == 0, output
    else:
        assert child.exitstatus == 130, output
        assert output.rstrip().splitlines()[-1] == "interrupted", output
    if line != "loaded " and delay == 0:  # torch, transformers and the model still to load: before the prompt
        assert child.exitstatus == 130, output


# --- base answers are the base model's -------------------------------------------------------


def test_base_answers_and_logits_equal_a_separately_loaded_base_model(chat_run, tiny_model_dir):
    """The tool this replaces loaded the adapter into the base model in place and then called that
    the base model. Here: the same code path as `chat` vs a base model loaded without peft."""
    from phased_cpt.inference.discovery import resolve_target
    from phased_cpt.inference.generation import load_generator

    saved = json.loads((chat_run / "phase2_evolution" / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA"
    generator = load_generator(resolve_target(chat_run), chat_template=False)
    assert any(p.abs().sum() > 0 for n, p in generator.model.named_parameters() if "lora_B" in n)

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        base_logits = plain(input_ids=ids).logits[0]
        greedy = plain.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=24,
            pad_token_id=tokenizer.eos_token_id,
            use_cache=True,
        )
    base_text = tokenizer.decode(greedy[0, ids.shape[1] :], skip_special_tokens=True)

    assert torch.equal(generator.prompt_logits(PROMPT, adapter=False), base_logits)
    assert (generator.prompt_logits(PROMPT, adapter=True) - base_logits).abs().max() > 1e-2

    _, records = chat([str(chat_run), "--prompt", PROMPT, "--max-tokens", "24"], cwd=chat_run.parent)
    assert records[0]["base"]["text"] == base_text
    assert records[0]["ft"]["text"] != base_text


# --- EOS ------------------------------------------------------------------------------------


def test_a_model_trained_on_short_documents_stops_at_eos(eos_run):
    prompts = ["the cat sat", "a dog ran", "birds"]
    args = [str(eos_run)]
    for p in prompts:
        args += ["--prompt", p]
    _, records = chat([*args, "--max-tokens", "32"], cwd=eos_run.parent)
    assert [r["prompt"] for r in records] == prompts
    assert [r["ft"]["text"] for r in records] == [" on the mat.", " in the park.", " sing at dawn."]
    for record in records:
        assert record["ft"]["stop"] == "eos" and record["ft"]["generated_tokens"] < 32
        # the base model (random weights) never learned EOS: it runs to the limit
        assert record["base"]["stop"] == "max_tokens" and record["base"]["generated_tokens"] == 32


# --- scripted comparison and discovery -------------------------------------------------------


def test_prompts_file_and_results(chat_run, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        json.dumps({"prompt": "def f(x):\n    return"}) + "\n" + json.dumps({"prompt": "import os"}) + "\n"
    )
    result, records = chat(
        [
            str(chat_run),
            "--prompts",
            str(prompts),
            "--prompt",
            "class A:",
            "--max-tokens",
            "5",
            "--temperature",
            "0.8",
            "--seed",
            "4",
        ],
        cwd=tmp_path,
    )
    assert [r["prompt"] for r in records] == ["class A:", "def f(x):\n    return", "import os"]
    for record in records:
        assert record["phase"] == "phase2_evolution"
        assert record["params"] == {
            "temperature": 0.8,
            "top_p": 1.0,
            "top_k": 50,
            "max_tokens": 5,
            "repetition_penalty": 1.0,
            "seed": 4,
        }
        for side in ("base", "ft"):
            assert 1 <= record[side]["generated_tokens"] <= 5 and record[side]["prompt_tokens"] > 0
    printed = stats(result.stdout.splitlines())
    assert [s["side"] for s in printed] == ["base", "ft"] * 3
    assert [s["generated"] for s in printed] == [
        r[side]["generated_tokens"] for r in records for side in ("base", "ft")
    ]


def test_explicit_phase_and_checkpoint(chat_run):
    _, records = chat(["--phase", "1", "--prompt", PROMPT, "--max-tokens", "4"], cwd=chat_run.parent.parent)
    assert records[0]["phase"] == "phase1_foundation"
    assert records[0]["adapter"].endswith("phase1_foundation/adapter")
    checkpoint = chat_run / "phase2_evolution" / "checkpoint-3"
    _, records = chat(["--adapter", str(checkpoint), "--prompt", PROMPT, "--max-tokens", "4"], cwd=chat_run.parent)
    assert records[0]["phase"] == "phase2_evolution/checkpoint-3"


def test_list_shows_phases_and_checkpoints(chat_run):
    result = run_cli(["chat", "--list"], cwd=chat_run.parent.parent)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"outputs/{chat_run.name}  (base model: ")
    assert "  1. phase1_foundation: finished, 6 steps" in lines
    assert "  2. phase2_evolution: finished, 6 steps" in lines
    assert f"       checkpoint  outputs/{chat_run.name}/phase2_evolution/checkpoint-6" in lines


def test_output_dir_from_a_training_config(chat_run, tmp_path):
    config = chat_run.parent.parent / "config.yaml"
    result = run_cli(["chat", "--config", str(config), "--list"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "phase2_evolution: finished" not in result.stdout  # output.dir is relative to the cwd: none here
    result = run_cli(["chat", "--config", str(config), "--list"], cwd=chat_run.parent.parent)
    assert "phase2_evolution: finished" in result.stdout


def test_inference_py_at_the_repo_root(chat_run):
    script = [sys.executable, str(REPO / "inference.py"), "--prompt", PROMPT, "--max-tokens", "3"]
    result = subprocess.run(
        script,
        cwd=chat_run.parent.parent,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert [s["side"] for s in stats(result.stdout.splitlines())] == ["base", "ft"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--phase", "nope"], "--phase nope: no such phase"),
        (["--out", "r.jsonl"], "--out needs --prompt TEXT or --prompts FILE"),
        (
            ["--prompt", "x", "--temperature", "-1"],
            "--temperature: temperature must be 0 (greedy) or a finite number >= 0.001",
        ),
        (["--adapter", "nowhere"], "--adapter nowhere: not an adapter directory"),
        (
            ["--prompt", "x", "--temperature", "1e-40"],
            "error: --temperature: temperature must be 0 (greedy) or a finite number >= 0.001, got '1e-40'",
        ),
        (  # the argument's bytes are ab 0xff cd: not UTF-8
            ["--prompt", "ab\udcffcd"],
            "error: --prompt: the prompt is not valid UTF-8 text (byte 0xff at character 3)",
        ),
    ],
)
def test_user_mistakes_exit_2_without_traceback(chat_run, args, message):
    assert_user_error(run_cli(["chat", *args], cwd=chat_run.parent.parent), message)


def test_repl_refuses_non_utf8_lines_and_a_tiny_temperature_with_one_line_each(chat_run):
    """Before: a TypeError from the tokenizer, and torch.multinomial's RuntimeError on inf/nan
    probabilities, each ending the REPL with a traceback. Under a strict UTF-8 locale too."""
    result = subprocess.run(
        [*phased_cpt_command(), "chat", "--max-tokens", "2"],
        cwd=chat_run.parent.parent,
        input=b"ab\xffcd\n/set temperature 1e-320\n/params\n/quit\n",
        capture_output=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8:strict"},
        timeout=300,
    )
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0 and "Traceback" not in err, err[-2000:]
    assert "error: the line is not valid UTF-8 text (byte 0xff at character 3)" in out
    assert "error: temperature must be 0 (greedy) or a finite number >= 0.001, got '1e-320'" in out
    assert "temperature=0.0 " in out  # /params: unchanged


def test_no_run_found_is_a_clear_error(tmp_path):
    result = run_cli(["chat", "--prompt", "x"], cwd=tmp_path)
    assert_user_error(result, "no run found under outputs/", "phased-cpt train CONFIG")


def test_bad_prompts_file_names_file_and_line(chat_run, tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", ["x"])  # field "training_content", not "prompt"
    result = run_cli(["chat", str(chat_run), "--prompts", str(prompts)], cwd=tmp_path)
    assert_user_error(result, f'{prompts}:1: expected an object with a non-empty string field "prompt"')
