"""Automatic grading of reviews: from its text alone, did the reviewer give 5 stars?

A Keras text model: ``TextVectorization`` (lower-cased words, the 20,000 most frequent
of the training split, adapted in ``fit``) -> a word embedding averaged over the review
-> two small dense layers -> ``great`` / ``other``. The gate compares a candidate with
the champion on accuracy (exact McNemar) and on AUC (paired bootstrap) over the same
held-out reviews.
"""

import keras
import tensorflow as tf

WORDS = 20_000
LENGTH = 200  # words read from each review

params = {"dim": [16, 32], "epochs": [6]}
metric = "accuracy"


def decode(data):
    # the review as text (its first 2,000 characters: more words than the model reads);
    # the model's first layer splits the words
    return data.decode("utf-8")[:2000]


def build(params):
    keras.utils.set_random_seed(0)
    text = keras.Input(shape=(), dtype="string")
    words = keras.layers.TextVectorization(WORDS, output_sequence_length=LENGTH, name="words")(text)
    vectors = keras.layers.Embedding(WORDS, params["dim"], mask_zero=True)(words)
    pooled = keras.layers.GlobalAveragePooling1D()(vectors)
    hidden = keras.layers.Dense(16, activation="relu")(pooled)
    scores = keras.layers.Dense(2, activation="softmax")(keras.layers.Dropout(0.3)(hidden))
    model = keras.Model(text, scores)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def fit(model, data, params):
    x, y = data.train.arrays()  # texts as a NumPy string array, grades as label ids
    text = tf.constant(x)  # Keras takes strings as TensorFlow tensors
    model.get_layer("words").adapt(text, batch_size=256)
    batches = tf.data.Dataset.from_tensor_slices((text, y)).shuffle(len(y), seed=0).batch(64)
    model.fit(batches, epochs=params["epochs"], callbacks=data.callbacks, verbose=0, shuffle=False)


def evaluate(model, data, params):
    x, y = data.eval.arrays()
    loss, accuracy = model.evaluate(tf.constant(x), y, batch_size=256, verbose=0)
    return {"accuracy": accuracy, "loss": loss}
