"""emoverify.computations: the registered claim computations, one module per `claims/*.yaml` file.

Each public module here registers the computations its claim file names (`@computation("vectors.x")`);
the registry (`registry`) finds them by listing this package, so a new module needs no list entry. A
computation is an adapter: it reads inputs through `_inputs` (stored activations, the store), calls the
maths in `analysis` and the model code in `lm`, and returns a `Measurement`. It may import `paper`, `data`,
`lm`, `analysis`, `store` and below; never `harness` or `report`. `registry` itself imports no torch.
"""
