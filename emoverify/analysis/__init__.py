"""emoverify.analysis: pure numpy/scipy over arrays, the maths of every phase.

Emotion vectors and cosines (`vectors`), subspaces, maps and their fast Gram-space versions beside the
plain references they are tested against (`subspace`), resampling that follows the datasets' design
(`resampling`), probes (`probes`), figures (`figures`) and CPU threads for numpy work (`threads`). It may
import `errors` and `paper`, numpy, scipy, scikit-learn and matplotlib; never torch, and never a layer
above it (`lm`, `computations`, `harness`, `report`). An `import-linter` contract keeps it so.
"""
