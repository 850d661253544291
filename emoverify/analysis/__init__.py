"""emoverify.analysis: pure numpy/scipy over arrays, the maths of every phase.

Emotion vectors and cosines (`vectors`); subspaces, overlaps and maps in their textbook forms (`subspace`),
and the fast versions that resample them, tested against those: least-squares maps and PCA overlaps of
resampled prompts in Gram space (`gram`), Procrustes' data-determined part and free completions
(`procrustes`). The cross-model analyses built on them return typed results: raw subspace overlap
(`raw_overlap`, SUB-1) and neutral-space alignment with Procrustes (`alignment`, its draws in
`alignment_draws`, its reported JSON in `alignment_report`, SUB-2/3); `result_parts` splits such results
into arrays and JSON for the result store and rebuilds them. Resampling that follows the datasets' design
(`design`: frames drawn together, labels shuffled within frames; `intervals`: BCa and percentile intervals,
null percentiles and p-values, the null rule; `resampling`: weighted means of draws and the older per-prompt
weights), probes (`probes`), figures (`figures`) and CPU threads for numpy work (`threads`). It may
import `errors` and `paper`, numpy, scipy, scikit-learn and matplotlib; never torch, and never a layer above
it (`lm`, `computations`, `harness`, `report`). An `import-linter` contract keeps it so.
"""
