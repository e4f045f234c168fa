"""`phased-cpt doctor CONFIG`: pre-flight checks before hours of training, as a pass/warn/fail table.

Checks the software (Python, torch, CUDA, NCCL, DeepSpeed, flash-attn, Liger), the hardware
(GPUs, their free memory, bf16), the inputs (every phase file readable and valid, a tokenizer
with an EOS token), the outputs (free disk for the checkpoints, W&B key or offline mode; the key
is never shown), an estimate of memory per GPU with a recommendation (`memory.py`) and, on several
nodes, this node's job identity and the master's address (`check_nodes`).
`phased-cpt launch` runs the same checks first. Any `fail` makes the command exit 2.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from phased_cpt.config import RunConfig, load_config, training_dtype
from phased_cpt.config.files import expand_pattern
from phased_cpt.errors import UserError
from phased_cpt.launch import Nodes, port_in_use_problem
from phased_cpt.memory import DTYPE_BYTES, GiB, Parallelism, estimate_run, gib
from phased_cpt.model_shape import adapter_parameters, model_shape, parameters_from_size
from phased_cpt.plans.deepspeed import plan_deepspeed
from phased_cpt.plans.job import job_identity
from phased_cpt.plans.target import target_gpus

PASS, WARN, FAIL = "pass", "warn", "fail"
MASTER_TIMEOUT_SECONDS = 3.0
CPU_HINT = (
    "no GPU: training runs on CPU in float32 (slow; fine for a tiny model). One process: "
    "`phased-cpt train CONFIG`; N CPU processes over gloo: `phased-cpt launch CONFIG --gpus N`"
)


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


def count(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n:,}"


def version_of(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info >= (3, 10)
    return Check("python", PASS if ok else FAIL, version if ok else f"{version}: phased-cpt needs Python 3.10 or newer")


def check_torch() -> Check:
    cuda = torch.version.cuda
    return Check("torch", PASS, f"{torch.__version__}, " + (f"CUDA {cuda}" if cuda else "CPU build (no CUDA)"))


def check_gpus(processes: int) -> list[Check]:
    """GPU count, names and free memory; bf16; NCCL (gloo on CPU)."""
    if not torch.cuda.is_available():
        return [
            Check("gpus", WARN, CPU_HINT),
            Check("bf16", PASS, "not used on CPU (float32)"),
            Check(
                "nccl",
                PASS if torch.distributed.is_gloo_available() else FAIL,
                "CPU processes communicate over gloo"
                + ("" if torch.distributed.is_gloo_available() else ": not available"),
            ),
        ]
    count = torch.cuda.device_count()
    lines = []
    for index in range(count):
        free, total = torch.cuda.mem_get_info(index)
        lines.append(f"{index}: {torch.cuda.get_device_name(index)}, {gib(free)} of {gib(total)} free")
    status = FAIL if processes > count else PASS
    detail = f"{count} GPU(s): " + "; ".join(lines)
    if processes > count:
        detail += f"; {processes} processes asked for, only {count} GPU(s) here"
    checks = [Check("gpus", status, detail)]
    bf16 = torch.cuda.is_bf16_supported()
    checks.append(
        Check(
            "bf16",
            PASS if bf16 else WARN,
            "supported"
            if bf16
            else "not supported: model.dtype auto trains in float32 (twice the memory); an Ampere or newer GPU has bf16",
        )
    )
    if torch.distributed.is_nccl_available():
        checks.append(Check("nccl", PASS, "NCCL " + ".".join(map(str, torch.cuda.nccl.version()))))
    else:
        checks.append(Check("nccl", FAIL if processes > 1 else WARN, "NCCL is not available in this torch build"))
    return checks


def check_packages(cfg: RunConfig) -> list[Check]:
    deepspeed = version_of("deepspeed")
    if deepspeed:
        ds = Check("deepspeed", PASS, deepspeed)
    elif cfg.deepspeed:
        ds = Check(
            "deepspeed",
            FAIL,
            f"deepspeed: {cfg.deepspeed} is set but DeepSpeed is not installed; pip install -e '.[deepspeed]'",
        )
    else:
        ds = Check("deepspeed", PASS, "not installed (not needed: deepspeed is null)")
    flash = version_of("flash-attn") or version_of("flash_attn")
    wants_flash = cfg.model.attn_implementation == "flash_attention_2"
    if flash:
        fa = Check("flash-attn", PASS, flash)
    elif wants_flash:
        fa = Check("flash-attn", FAIL, "model.attn_implementation is flash_attention_2 but flash-attn is not installed")
    elif torch.cuda.is_available():
        fa = Check(
            "flash-attn", WARN, "not installed: attention uses sdpa (pip install flash-attn --no-build-isolation)"
        )
    else:
        fa = Check("flash-attn", PASS, "not installed (not used on CPU)")
    liger = version_of("liger-kernel")
    lg = Check("liger-kernel", PASS, liger or "not installed (optional: pip install -e '.[gpu]')")
    return [ds, fa, lg]


def check_data(cfg: RunConfig) -> list[Check]:
    from phased_cpt.data.jsonl import scan_phase_files
    from phased_cpt.errors import DataError

    checks = []
    for phase in cfg.phases:
        files = phase.files
        missing = [s.spec for s in phase.sources if not expand_pattern(Path(s.spec))]
        missing += [str(f) for f in files if not Path(f).is_file()]
        if missing:
            checks.append(Check(f"data {phase.name}", FAIL, f"missing file: {', '.join(missing)}"))
            continue
        try:
            scans = scan_phase_files(phase, cfg.data)
            for scan in scans:
                scan.raise_if_bad(cfg.data.text_field)
        except DataError as err:
            first = [line.strip() for line in str(err).splitlines()[:2]]  # the summary and the first bad line
            checks.append(Check(f"data {phase.name}", FAIL, " ".join(first)))
            continue
        documents = sum(scan.documents for scan in scans)
        status = PASS if documents else FAIL
        checks.append(Check(f"data {phase.name}", status, f"{documents} documents in {', '.join(map(str, files))}"))
    return checks


def check_tokenizer(cfg: RunConfig) -> Check:
    """The tokenizer as training loads it (`modeling.load_tokenizer`: EOS, a probe text, its ids
    against the model's embedding)."""
    from phased_cpt.modeling import load_tokenizer

    try:
        tokenizer = load_tokenizer(cfg.model)
    except UserError as err:
        return Check("tokenizer", FAIL, str(err))
    return Check("tokenizer", PASS, f"{len(tokenizer)} ids, EOS {tokenizer.eos_token!r} (id {tokenizer.eos_token_id})")


def checkpoint_bytes(cfg: RunConfig, model_config: Path | None = None) -> int | None:
    """Disk for the run: per phase, `save_total_limit` (+1 while the next is written) checkpoints
    of the adapter and its optimizer (fp32 weight 4 + Adam 8 + DeepSpeed's fp32 copy 4 bytes per
    trained parameter: LoRA, DoRA's magnitudes, `embeddings: full`'s copies) and the final
    adapter (4 bytes per trained parameter)."""
    shape = model_shape(cfg.model, model_config)
    if shape is None:
        return None
    lora = adapter_parameters(shape, cfg.training.lora).total
    kept = (cfg.training.save_total_limit or 10) + 1
    return len(cfg.phases) * (kept * lora * 16 + lora * 4)


def check_disk(cfg: RunConfig, model_config: Path | None = None) -> Check:
    where = Path(cfg.output.dir).resolve()
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    need = checkpoint_bytes(cfg, model_config)
    if need is None:
        return Check("disk", PASS, f"{gib(free)} free in {where} (checkpoint size unknown: no config.json)")
    detail = f"{gib(free)} free in {where}, checkpoints need ~{gib(need)}"
    if free < need:
        return Check("disk", FAIL, detail + ": free space or lower training.save_total_limit")
    return Check("disk", WARN if free < 2 * need else PASS, detail)


def check_wandb(cfg: RunConfig) -> Check:
    if not cfg.wandb.enabled:
        return Check("wandb", PASS, "disabled")
    has_key = bool(cfg.wandb.api_key and cfg.wandb.api_key.get_secret_value()) or bool(os.environ.get("WANDB_API_KEY"))
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return Check("wandb", PASS, f"WANDB_MODE={mode}" + (" (API key set)" if has_key else ""))
    if has_key:
        return Check("wandb", PASS, "online (API key set)")
    return Check("wandb", WARN, "no API key: runs offline; upload later with `wandb sync <run>/wandb`")


def check_memory(
    cfg: RunConfig,
    processes: int,
    gpu_memory_gib: float | None = None,
    model_config: Path | None = None,
) -> list[Check]:
    """The DeepSpeed choice and the estimated memory per GPU (`memory.estimate_run`), compared
    with `gpu_memory_gib` when given, else with the GPUs here (`plans/target.target_gpus`);
    unknown (a warning) without either."""
    given = int(gpu_memory_gib * GiB) if gpu_memory_gib is not None else None
    plan = plan_deepspeed(cfg, processes, given, model_config)
    stage = plan.zero_stage if plan else 0
    checks = [Check("deepspeed plan", PASS, f"{plan.source}: {plan.reason}" if plan else "none (one process, or DDP)")]
    gpus = target_gpus(cfg.training.performance.liger_kernel, given, here="free")
    gpu, have = gpus[0], gpus[0].memory_bytes
    here = given is None and torch.cuda.is_available()
    dtype = training_dtype(cfg.model.dtype, gpu.bf16)
    dtype_note = f"{dtype}" + ("" if here or cfg.model.dtype != "auto" else " (model.dtype auto, on a GPU with bf16)")
    if gpu_memory_gib is not None:
        where = f"the {gpu_memory_gib:g} GiB of --gpu-memory"
    elif have is not None:
        where = f"the {gib(have)} free on the GPU(s) here"
    shape = model_shape(cfg.model, model_config)
    if shape is None:
        params = parameters_from_size(cfg.model.size)
        hint = "pass --model-config PATH (a config.json) for the full estimate"
        if params is None:
            return checks + [
                Check(
                    "memory",
                    WARN,
                    f"model shape unknown (no config.json found for {cfg.model.name}, model.size unreadable); {hint}",
                )
            ]
        weights = params * DTYPE_BYTES[dtype] / (processes if stage == 3 else 1)
        detail = f"weights alone ~{gib(weights)} per GPU ({dtype}, from model.size {cfg.model.size}); {hint}"
        if have is not None and weights > have:
            return checks + [Check("memory", FAIL, detail + f"; more than {where}: " + recommendation(cfg, stage))]
        return checks + [Check("memory", WARN, detail)]
    parallel = Parallelism(stage, processes, cfg.deepspeed_offload if plan else "none")
    run = estimate_run(cfg, shape, gpu, parallel)
    estimate = run.memory
    chosen = f", checkpointing {run.checkpointing.describe()}" if cfg.training.gradient_checkpointing == "auto" else ""
    detail = (
        f"~{gib(estimate.gpu_bytes)} per GPU ({estimate.describe()}; plus CUDA context and fragmentation; "
        f"{count(shape.parameters)} parameters, {dtype_note}, ZeRO-{stage}, {processes} process(es), "
        f"Liger {'on' if gpu.liger else 'off'}{chosen})"
    )
    for other in gpus[1:]:  # liger_kernel: auto, on GPUs not here
        detail += f"; ~{gib(estimate_run(cfg, shape, other, parallel).memory.gpu_bytes)} where liger_kernel: auto finds Liger installed"
    if have is None:
        return checks + [
            Check(
                "memory",
                WARN,
                f"unknown (no GPU here): needs {detail}; "
                "pass --gpu-memory GiB to check it against the GPUs you will use",
            )
        ]
    if estimate.gpu_bytes <= have:  # gpu_bytes holds the CUDA context and fragmentation already
        return checks + [Check("memory", PASS, f"needs {detail}; fits {where}")]
    return checks + [
        Check("memory", FAIL, f"needs {detail}; more than {where}: " + recommendation(cfg, stage, gpu.liger))
    ]


def recommendation(cfg: RunConfig, stage: int, liger: bool = True) -> str:
    steps = []
    if not liger:
        steps.append("Liger kernels (pip install 'phased-cpt[gpu]'; training.performance.liger_kernel: auto)")
    if cfg.training.gradient_checkpointing is False:
        steps.append("training.gradient_checkpointing: auto (or true)")
    if stage < 3:
        steps.append("deepspeed: zero3")
    if cfg.deepspeed_offload == "none":
        steps.append("deepspeed_offload: optimizer")
    if cfg.training.micro_batch_size > 1:
        steps.append("a lower training.micro_batch_size (raise gradient_accumulation_steps)")
    steps.append("a lower context.max_tokens")
    return "try " + ", then ".join(steps)


def check_nodes(cfg: RunConfig, nodes: Nodes) -> list[Check]:
    """Several nodes: what this node can check alone. Its job identity (config and data sha256)
    to compare with the other nodes' (every process of the run also compares itself with rank 0
    at start and stops the run on a difference), and the master's address and port."""
    try:
        identity = job_identity(cfg)
    except OSError as err:
        return [Check("job identity", FAIL, f"cannot read the data to fingerprint it: {err}"), check_master(nodes)]
    where = f"node {nodes.rank} of {nodes.count}" if nodes.rank is not None else f"{nodes.count} nodes"
    checks = [
        Check(
            "job identity",
            PASS,
            f"config {identity.config_sha256[:12]}, data {identity.data_sha256[:12]} "
            f"({where}, host {identity.host}): the same on every node",
        )
    ]
    return checks + [check_master(nodes)]


def check_master(nodes: Nodes) -> Check:
    """Node 0 (or the node DeepSpeed's launcher starts from): the master's port is free here.
    Another node: node 0's address resolves and its port is reachable (refused is fine: node 0
    may not be started yet)."""
    addr, port = nodes.master_addr, nodes.master_port
    if nodes.rank in (None, 0):
        problem = port_in_use_problem(addr, port)
        if problem is not None:
            return Check("master", FAIL, problem)
        return Check("master", PASS, f"{addr or 'this node'}:{port} is free here (node 0 listens on it)")
    try:
        with socket.create_connection((addr, port), timeout=MASTER_TIMEOUT_SECONDS):
            return Check("master", PASS, f"node 0 answers on {addr}:{port}")
    except socket.gaierror as err:
        return Check("master", FAIL, f"--master-addr {addr}: cannot resolve it ({err.strerror})")
    except ConnectionRefusedError:
        return Check(
            "master",
            WARN,
            f"{addr} answers but nothing listens on port {port} yet: "
            "node 0 is not started (this node will wait for it)",
        )
    except OSError as err:
        return Check(
            "master",
            FAIL,
            f"cannot reach {addr}:{port} ({err.strerror or err}): check --master-addr, "
            "--master-port and the firewall between the nodes",
        )


def run_checks(
    config: Path,
    overrides: list[str] = (),
    processes: int = 1,
    gpu_memory_gib: float | None = None,
    model_config: Path | None = None,
    nodes: Nodes | None = None,
) -> list[Check]:
    """Every check; a config that does not load is a UserError (all its problems listed).
    `gpu_memory_gib`: the memory of the GPUs the run will use (default: the GPUs here);
    `model_config`: the model's config.json when model.name's is not on this machine; `nodes`:
    the nodes of the job, checked per node (`check_nodes`) when there are several."""
    cfg, _ = load_config(config, list(overrides), check_files=False)
    checks = [check_python(), check_torch(), *check_gpus(processes), *check_packages(cfg)]
    checks += check_data(cfg)
    checks += [check_tokenizer(cfg), check_disk(cfg, model_config), check_wandb(cfg)]
    # ZeRO partitions over every process of the job, on every node
    checks += check_memory(cfg, processes * (nodes.count if nodes is not None else 1), gpu_memory_gib, model_config)
    if nodes is not None and (nodes.several or nodes.hostfile is not None):
        checks += check_nodes(cfg, nodes)
    elif nodes is not None and nodes.master_port is not None:  # one node, --master-port given
        checks.append(check_master(nodes))
    return checks


def has_failures(checks: list[Check]) -> bool:
    return any(c.status == FAIL for c in checks)


def format_report(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'check':<{width}}  status  detail"]
    lines += [f"{c.name:<{width}}  {c.status:<6}  {c.detail}" for c in checks]
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    lines.append(f"{len(checks)} checks: {failed} failed, {warned} warning(s)")
    return "\n".join(lines)


def report_json(checks: list[Check]) -> list[dict]:
    return [asdict(c) for c in checks]


def report_checks(checks: list[Check], as_json: bool) -> int:
    """Print the table (or JSON with --json) and exit 2 on any failed check."""
    import json

    print(json.dumps(report_json(checks), indent=2) if as_json else format_report(checks))
    if has_failures(checks):
        raise UserError("pre-flight checks failed: " + ", ".join(c.name for c in checks if c.status == FAIL))
    return 0
