"""The meta-learning engine: `MetaLearner` and what it is made of.

- `meta_learner`: the `keras.Model` base class and its public hooks;
- `predictions`: adapted predictions of an episode or of one task;
- `learner_calls`: the learner on fast weights, and the task losses;
- `settings`: the checked settings and the Keras config;
- `inputs`: episode batches in, checked (`episode_checks`; `task_inputs`:
  one task);
- `tasks`: `Task`, `TaskUpdate` and the per-task loop;
- `distribute`: tf.distribute and its Keras workarounds;
- `serving`: the SavedModel that adapts and predicts.
"""

from keras_meta.engine.meta_learner import MetaLearner
from keras_meta.engine.tasks import Task, TaskUpdate

__all__ = ["MetaLearner", "Task", "TaskUpdate"]
