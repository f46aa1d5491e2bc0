"""``bench/flops.py`` counts the products that the NumPy RMC takes on each configuration."""

import pytest

from bench import flops
from bench.compare import CONFIGS
from models import make_model, make_task


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("batch", [1, None])
def test_flop_count_follows_the_model_paths(name, batch):
    config = CONFIGS[name]
    batch = batch or config.batch_size
    task = make_task(config.task, **config.task_options)
    model = make_model(
        "rmc",
        input_size=task.input_size,
        output_size=task.output_size,
        **config.models["rmc"],
    )
    width = model.mem_size
    qkv_width = model.params["block0.qkv.W"].shape[1]
    model_config = model.config
    shares = flops._shares_initial_memory(model_config, batch, width, qkv_width)
    splits = flops._splits_input_qkv(model_config, batch, width, qkv_width)
    assert shares == model._shares_initial_memory(batch)
    assert splits == model._splits_input_qkv(batch)


def test_nth_farthest_takes_both_saving_paths():
    config = CONFIGS["nth-farthest"]
    task = make_task(config.task, **config.task_options)
    model = make_model(
        "rmc", input_size=task.input_size, output_size=task.output_size, **config.models["rmc"]
    )
    assert model._shares_initial_memory(config.batch_size)
    assert model._splits_input_qkv(config.batch_size)
    assert not model._shares_initial_memory(1)


def test_step_count_leaves_out_initial_memory_grad():
    """The training count is 3 forwards less the products back to step 0's memory rows."""
    config = CONFIGS["tracking"]
    task = make_task(config.task, **config.task_options)
    model = make_model(
        "rmc", input_size=task.input_size, output_size=task.output_size, **config.models["rmc"]
    )
    batch, steps = config.batch_size, task.seq_len
    width = model.mem_size
    qkv_width = model.params["block0.qkv.W"].shape[1]
    gate_width = model.params["gate_memory.W"].shape[1]  # 2G
    skipped = flops.matmul_flops(model.hyper.mem_slots * batch, qkv_width + gate_width, width)
    forward = flops.rmc_forward_flops(model.config, batch, steps)
    assert flops.training_step_flops(model.config, batch, steps) == 3 * forward - skipped
