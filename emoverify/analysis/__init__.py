"""emoverify.analysis: pure numpy/scipy over arrays, the maths of every phase.

Emotion vectors and cosines (`vectors`); subspaces, overlaps and maps in their textbook forms (`subspace`),
and the fast versions that resample them, tested against those: least-squares maps and PCA overlaps of
resampled prompts in Gram space (`gram`), Procrustes' data-determined part and free completions
(`procrustes`); resampling that follows the datasets' design (`resampling`), probes (`probes`), figures
(`figures`) and CPU threads for numpy work (`threads`). It may import `errors` and `paper`, numpy, scipy,
scikit-learn and matplotlib; never torch, and never a layer above it (`lm`, `computations`, `harness`,
`report`). An `import-linter` contract keeps it so.
"""
