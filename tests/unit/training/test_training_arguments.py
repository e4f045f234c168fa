"""Every training key reaches the HF Trainer: a test that fails if one is dropped on the way."""

import torch

from phased_cpt.config import LoraConfig, ModelConfig, TrainingConfig
from phased_cpt.modeling import load_base_model
from phased_cpt.training.phase import training_arguments


def test_each_training_key_is_passed_to_the_trainer(tmp_path):
    training = TrainingConfig(
        micro_batch_size=3,
        gradient_accumulation_steps=5,
        learning_rate=7e-5,
        lr_scheduler="linear",
        warmup_ratio=0.2,
        weight_decay=0.01,
        max_grad_norm=0.5,
        gradient_checkpointing=False,
        seed=123,
        logging_steps=4,
        save_steps=9,
        max_steps=17,
        lora=LoraConfig(r=4),
    )
    args = training_arguments(training, epochs=2.5, phase_dir=tmp_path)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (3, 5)
    assert args.learning_rate == 7e-5 and args.lr_scheduler_type.value == "linear"
    assert args.warmup_steps == 0.2 and args.get_warmup_steps(100) == 20  # a ratio of the phase's steps
    assert (args.weight_decay, args.max_grad_norm, args.seed) == (0.01, 0.5, 123)
    assert (args.logging_steps, args.save_steps, args.max_steps, args.num_train_epochs) == (4, 9, 17, 2.5)
    assert not args.activation_checkpointing
    assert args.save_total_limit is None  # rotation is CheckpointCallback's, after a newer checkpoint is complete
    assert not args.save_only_model and args.output_dir == str(tmp_path)
    checkpointed = training_arguments(TrainingConfig(gradient_checkpointing=True), epochs=1, phase_dir=tmp_path)
    assert checkpointed.activation_checkpointing and checkpointed.max_steps == -1


def test_model_dtype_and_attention_are_applied(tiny_model_dir):
    model = load_base_model(ModelConfig(name=str(tiny_model_dir), dtype="bfloat16", attn_implementation="eager"))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.config._attn_implementation == "eager"
    assert model.config.use_cache is False
