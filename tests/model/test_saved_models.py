"""Models logged by an earlier cvops keep loading after its classes moved (the pickles name their old
modules): a detector and a classifier saved by cvops 0.1 load through the one loading path and answer
exactly as they did."""

from pathlib import Path

import pytest
import torch

from cvops.tracking import TrainedModel, load_trained_model

SAVED = Path(__file__).parents[1] / "assets" / "saved-by-0.1"


@pytest.mark.parametrize("name", ["detector", "classifier"])
def test_a_model_saved_by_cvops_0_1_loads_and_answers_as_it_did(name: str) -> None:
    trained = TrainedModel(
        model_uri=str(SAVED / name),
        run_id="r",
        architecture="a",
        class_names=["0", "1", "2"],
        image_size=32,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        best_epoch=1,
    )
    model = load_trained_model(trained)
    saved = torch.load(SAVED / f"{name}-io.pt", weights_only=True)
    with torch.no_grad():
        answer = model(saved["input"])
    expected = saved["output"]
    pairs = zip(answer, expected, strict=True) if isinstance(expected, tuple) else [(answer, expected)]
    for got, want in pairs:
        torch.testing.assert_close(got, want)
