"""`python -m ladder.pretrain` / `accelerate launch -m ladder.pretrain`: the pretraining stage."""

from ladder.runtime import stage_entry
from ladder.pretrain.train import main

stage_entry(main)
