"""What an earlier cvops saved keeps loading after its modules moved (pickles and job stores name them):
a detector and a classifier logged by cvops 0.1 load through the one loading path and answer exactly as they
did, and its schedule keeps its job."""

import shutil
from pathlib import Path

import pytest
import torch

from cvops.registry.tracking import TrainedModel, load_trained_model

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


def test_a_schedule_saved_by_cvops_0_1_keeps_its_job_and_next_run(tmp_path: Path) -> None:
    """Its job names `cvops.scheduler:run_job`; APScheduler would drop a job it cannot resolve."""
    from cvops.cli.scheduler import open_scheduler, run_job
    from cvops.config import Project

    shutil.copy(Path(__file__).parents[2] / "params.yaml", tmp_path)  # the default: a job store under monitoring/
    project = Project(tmp_path)
    project.monitoring_dir.mkdir(parents=True)
    shutil.copy(SAVED / "scheduler.sqlite", project.monitoring_dir / "scheduler.sqlite")
    scheduler = open_scheduler(project)
    scheduler.start(paused=True)
    try:
        (job,) = scheduler.get_jobs()
        assert (job.id, job.func, str(job.next_run_time)) == ("monitoring", run_job, "2026-12-06 00:00:00+00:00")
    finally:
        scheduler.shutdown(wait=False)
