"""emoverify.lm: everything that touches a model.

Loading (hub id, local directory, stand-ins: `models`, `standins`, `checkpoints`), the hooks that read and
edit a forward pass (`hooks`, the only module that edits one), residual extraction and its store
(`extraction`), and the MiniLM encoder of the positive control (`encoders`). It may import `paper`, `data`,
`errors`, `provenance`, `store` and torch/transformers; never `analysis`, `computations`, `harness` or
`report`. `checkpoints` alone is free of torch: the claim harness asks it whether weights are present.

The layer convention, used everywhere: a *block index* `l` (0..n_layers-1) names a transformer block, as
`hooks.act_name` does (`blocks.{l}.resid_post`); a *stored index* `i` (0..n_layers) indexes the layer axis
of stored activations, where 0 is the embedding output and `i` the output of block `i - 1`. So block `l`'s
output is stored index `l + 1`; `stored_index` and `block_index` in `extraction` convert.

Submodules are imported by name (`from emoverify.lm.models import load_model`): this package's `__init__`
imports nothing, so `lm.checkpoints` stays importable without torch.
"""
