"""Trains MAML: `python -m train.maml --dataset=sinusoid`.

For now this runs the MAML paper's sinusoid regression (Section 5.1): it
meta-trains, then prints the query MSE of new tasks before and after one
adaptation step, and of a jointly pre-trained network adapted the same way.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "sinusoid", ["sinusoid"], "Task distribution.")
flags.DEFINE_integer("iterations", 5000, "Meta-training iterations.")
flags.DEFINE_integer("shots", 10, "K: support examples per task.")
flags.DEFINE_integer("meta_batch", 25, "Tasks per meta-batch.")
flags.DEFINE_float("inner_lr", 0.01, "Inner-loop step size (alpha).")
flags.DEFINE_float("meta_lr", 1e-3, "Adam step size of the meta-update.")
flags.DEFINE_integer("eval_tasks", 600, "Test tasks for the final figures.")
flags.DEFINE_integer("seed", 0, "Random seed.")


def main(argv):
    del argv
    import keras

    import keras_meta

    keras.utils.set_random_seed(FLAGS.seed)

    def data(seed):
        return keras_meta.data.sinusoid(
            shots=FLAGS.shots,
            queries=FLAGS.shots,
            meta_batch=FLAGS.meta_batch,
            seed=seed,
        )

    maml = keras_meta.MAML(keras_meta.models.mlp(), inner_lr=FLAGS.inner_lr)
    pretrain = keras_meta.Pretrain(
        keras_meta.models.mlp(),
        adaptation="fine_tune",
        inner_lr=FLAGS.inner_lr,
        eval_inner_steps=1,
    )
    epochs = 10
    for name, model, seed in (
        ("MAML", maml, FLAGS.seed + 1),
        ("pre-training", pretrain, FLAGS.seed + 2),
    ):
        print(f"Training {name} for {FLAGS.iterations} iterations")
        model.compile(
            optimizer=keras.optimizers.Adam(FLAGS.meta_lr), loss="mse"
        )
        model.fit(
            data(seed),
            epochs=epochs,
            steps_per_epoch=max(1, FLAGS.iterations // epochs),
            verbose=2,
        )
    batches = max(1, FLAGS.eval_tasks // FLAGS.meta_batch)
    test = data(FLAGS.seed + 3).take(batches).cache()
    results = {"MAML, 1 step": maml.evaluate(test, verbose=0)}
    maml.eval_inner_steps = 0
    results["MAML, no adaptation"] = maml.evaluate(test, verbose=0)
    results["pre-training, 1 step"] = pretrain.evaluate(test, verbose=0)
    print(
        f"\nQuery MSE on {batches * FLAGS.meta_batch} new sinusoids "
        f"({FLAGS.shots}-shot):"
    )
    for name, mse in results.items():
        print(f"  {name:<22} {mse:.3f}")


if __name__ == "__main__":
    app.run(main)
