"""The GPU check's time plan (`benchmarks/gpu_time_plan.py`): from the recorded H100 step times, it
fits the check's budget, which fits 8 minutes."""

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from gpu_check import GPU_BUDGET_SECONDS  # noqa: E402
from gpu_time_plan import GPU_COSTS, GPU_SIZES, plan_cases, step_seconds  # noqa: E402

from tests.calibration import H100_TABLE  # noqa: E402


@pytest.mark.parametrize("liger", [True, False])
def test_the_h100_plan_fits_the_budget_and_the_budget_fits_8_minutes(liger):
    plans = plan_cases(GPU_SIZES, GPU_COSTS, liger)
    assert [p.name for p in plans] == ["train", "throughput", "corpus"]
    total = GPU_COSTS.install + sum(p.seconds for p in plans)
    assert total <= GPU_BUDGET_SECONDS <= 8 * 60
    for plan in plans:
        assert plan.arithmetic.endswith(f"= {plan.seconds:.0f} s")


def test_step_times_are_the_recorded_h100_ones():
    for shape, tokens, liger, tokens_per_second, _ in H100_TABLE:
        seconds, source = step_seconds(shape, tokens, liger, GPU_COSTS)
        assert seconds == pytest.approx(tokens / tokens_per_second)
        assert source == f"recorded {tokens_per_second:,} tok/s"
    throughput = plan_cases(GPU_SIZES, GPU_COSTS, liger=True)[1]
    assert "4 x 3.71 s (recorded 4,412 tok/s)" in throughput.arithmetic  # plain 7B/16K
    assert "4 x 3.41 s (recorded 4,805 tok/s)" in throughput.arithmetic  # with Liger


def test_a_row_the_table_lacks_comes_from_flops_py():
    seconds, source = step_seconds("7b", 32768, True, GPU_COSTS)
    assert source == "flops.py estimate" and seconds > 32768 / 4805
