"""Every shipped accelerate config parses, and each says what it is for."""

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "accelerate_configs").glob("*.yaml"))
EXPECTED = {"cpu", "cpu_ddp", "single_gpu", "multi_gpu", "fsdp", "zero2", "zero3", "zero2_offload",
            "zero3_offload", "multi_node"}


def test_the_expected_set_is_shipped():
    assert {c.stem for c in CONFIGS} == EXPECTED


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_parses_and_is_commented(path):
    config = load_config_from_file(str(path))
    assert config.num_processes >= 1
    assert path.read_text().startswith("#"), "each config opens with a comment saying when to use it"
    if path.stem.startswith("zero") or path.stem == "multi_node":
        assert config.deepspeed_config["zero_stage"] in (2, 3)
    if path.stem == "fsdp":
        assert config.fsdp_config["fsdp_version"] == 2
