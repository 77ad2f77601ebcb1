"""Recommendation: matrix factorisation in Keras, ranked per user and gated on NDCG@10.

Each example is one rating: the user's and the movie's ids go through one embedding
table (users first, then movies), the model scores the pair with the dot product of
their vectors plus a bias for each, and learns to predict the rating's grade (0-4). The
gate ranks each user's evaluation movies by that score: ``groups(x)`` gives every
evaluation row its user, so NDCG@10 and recall@10 are computed per user and whole users
are resampled.
"""

import json

import keras
import numpy as np

from lakeloop.gate import metric_value

USERS = 1024  # user ids of the data set are 1..671
MOVIES = 10_000  # movie_index of the data set is 0..9065 (prepare.py)
GRADE_SIGN = 1.0  # the model learns GRADE_SIGN x grade: higher scores for better-liked movies

params = {"dim": [16, 32], "epochs": [6]}
metric = "ndcg@10"


def decode(data):
    row = json.loads(data)
    return np.array([row["user"], USERS + row["movie_index"]], dtype=np.int32)


def groups(x):
    return x[:, 0]


def build(params):
    keras.utils.set_random_seed(0)
    ids = keras.Input((2,), dtype="int32")
    vectors = keras.layers.Embedding(
        USERS + MOVIES, params["dim"], embeddings_regularizer=keras.regularizers.L2(1e-5)
    )(ids)
    user = keras.layers.Cropping1D((0, 1))(vectors)
    movie = keras.layers.Cropping1D((1, 0))(vectors)
    match = keras.layers.Flatten()(keras.layers.Dot(axes=2)([user, movie]))
    biases = keras.layers.Flatten()(keras.layers.Embedding(USERS + MOVIES, 1)(ids))
    score = keras.layers.Dense(1)(keras.layers.Concatenate()([match, biases]))
    model = keras.Model(ids, score)
    model.compile(keras.optimizers.Adam(0.005), "mse")
    return model


def fit(model, data, params):
    x, y = data.train.arrays()
    model.fit(
        x,
        GRADE_SIGN * y.astype("float32"),
        batch_size=256,
        epochs=params["epochs"],
        callbacks=data.callbacks,
        verbose=0,
    )


def evaluate(model, data, params):
    x, y = data.eval.arrays()
    scores = model.predict(x, batch_size=4096, verbose=0)[:, 0]
    by_user = groups(x)
    return {
        "ndcg@10": metric_value("ndcg@10", y, scores, groups=by_user),
        "recall@10": metric_value("recall@10", y, scores, groups=by_user),
    }
