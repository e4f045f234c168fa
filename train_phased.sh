#!/usr/bin/env bash
# Multi-GPU training for users of the older tool: pre-flight checks, then one process per GPU.
#
#   ./train_phased.sh [CONFIG] [--gpus N] [--hostfile FILE] [--launcher deepspeed|torchrun] [--set key=value ...]
#
# CONFIG defaults to ./config.yaml. The same as `phased-cpt launch CONFIG ...` (docs/multi-gpu.md);
# works without `pip install -e .` as long as the requirements are installed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
config="config.yaml"
if [[ $# -gt 0 && "$1" != -* ]]; then
    config="$1"
    shift
fi

if command -v phased-cpt >/dev/null 2>&1; then
    exec phased-cpt launch "$config" "$@"
fi
export PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" -m phased_cpt launch "$config" "$@"
