"""A small Keras CNN on the 8x8 digits: the pipeline file `lakeloop train` runs.

Every combination of `params` is one trial; trials run in parallel processes and the
best by `metric` is registered as model `digits-cnn` with its lineage.
"""

import keras

from lakeloop.train.data import decode_image

params = {"filters": [8, 16], "dropout": [0.0, 0.25], "epochs": [8]}
metric = "accuracy"


def decode(data):
    return decode_image(data)[..., None]  # (h, w) uint8 -> (h, w, 1)


def build(params):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((None, None, 1)),  # 8x8 digits, or 28x28 MNIST (--dataset mnist)
            keras.layers.Resizing(8, 8, interpolation="area"),  # the same for 8x8 images
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(params["filters"], 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dropout(params["dropout"]),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def fit(model, data, params):
    train = data.train.tf_dataset(batch_size=32, shuffle_buffer=512)
    # the reader shuffles (through its buffer, and the volume order each epoch)
    model.fit(train, epochs=params["epochs"], callbacks=data.callbacks, verbose=0, shuffle=False)


def evaluate(model, data, params):
    loss, accuracy = model.evaluate(data.eval.tf_dataset(batch_size=256), verbose=0)
    return {"accuracy": accuracy, "loss": loss}
