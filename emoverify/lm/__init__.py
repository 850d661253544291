"""emoverify.lm: everything that touches a model.

Loading (hub id, local directory, stand-ins: `models`, `standins`, `standin_build`, `checkpoints`), the
hooks that read and edit a forward pass (`hooks`, the only module that edits one), residual extraction
(`extraction`) and the store of its arrays (`activation_store`), and the MiniLM encoder of the positive
control (`encoders`). It may import `paper`, `data`, `errors`, `provenance`, `store` and torch/transformers;
never `analysis`, `computations`, `harness` or `report`. `checkpoints`, `standins` and `activation_store`
import no torch at module level (nor does `encoders`): the claim harness asks whether weights are present,
and a run whose results are all in the store reads them without loading a model library.

The layer convention, used everywhere: a *block index* `l` (0..n_layers-1) names a transformer block, as
`hooks.act_name` does (`blocks.{l}.resid_post`); a *stored index* `i` (0..n_layers) indexes the layer axis
of stored activations, where 0 is the embedding output and `i` the output of block `i - 1`. So block `l`'s
output is stored index `l + 1`; `stored_index` and `block_index` in `activation_store` convert.

Submodules are imported by name (`from emoverify.lm.models import load_model`): this package's `__init__`
imports nothing, so `lm.checkpoints` stays importable without torch.
"""
