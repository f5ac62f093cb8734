"""Rapid learning or feature reuse? Tools to ask a trained meta-learner.

Raghu et al. (ICLR 2020) found that MAML works mostly by feature reuse: the
inner loop barely changes the body's representations and mostly adapts the
head. These functions measure that for any keras-meta model:

- `linear_cka(x, y)` (Kornblith et al. 2019) and `svcca(x, y)` (Raghu et
  al. 2017): similarity in [0, 1] of two representations `[examples,
  features]` of the same examples.
- `representation_similarity(model, episodes, num_tasks)`: per layer, the
  similarity of the learner's activations on query images before and after
  the inner loop.
- `freezing_ablation(model, episodes, num_tasks)`: test accuracy when the
  inner loop updates only layers i..L (the ANIL paper's Table 1).
- `nil_accuracy(model, episodes, num_tasks)`: no inner loop at all; queries
  are classified by cosine similarity to the support features of each class
  (the paper's NIL head, Table 4).
- `head_only_accuracy(model, episodes, num_tasks, steps, learning_rates)`:
  the inner loop on the head alone, for several step counts and sizes.
- `update_directions(model, episodes, num_tasks, steps)`: the directions in
  which pre-training, first-order MAML, MAML and Reptile move the
  initialisation, their norms and cosines.
"""

from keras_meta.analysis.ablation import (
    freezing_ablation,
    has_prototype_head,
    head_only_accuracy,
    nil_accuracy,
)
from keras_meta.analysis.similarity import (
    linear_cka,
    representation_similarity,
    svcca,
)
from keras_meta.analysis.update_directions import DIRECTIONS, update_directions

__all__ = [
    "DIRECTIONS",
    "freezing_ablation",
    "has_prototype_head",
    "head_only_accuracy",
    "linear_cka",
    "nil_accuracy",
    "representation_similarity",
    "svcca",
    "update_directions",
]
