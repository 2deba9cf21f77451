"""This project's own pieces, named in its params.yaml: a model (train.model: shapes_kit.model:small_cnn) and a
dataset reader (data.source: shapes_kit.reader:samples)."""
