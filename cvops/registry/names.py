"""Every name cvops writes to MLflow, with its meaning: what the docs' reference lists (reference/mlflow.md) and
what the tests hold a real run to (every metric and tag a training writes is here). `<class>`, `<attribute>`,
`<value>`, `<column>`, `<check>`, `<format>` and `<name>` stand for names from the data or the params; each
name is written as MLflow stores it (characters it refuses become `_`, cvops.tracking.metric_name)."""

import re

TRAINING_METRICS = {
    "train_loss": "loss on the training split, per epoch",
    "train_accuracy": "training accuracy per epoch (a classifier)",
    "val_loss": "loss on the validation split, per epoch: early stopping and the best epoch follow it",
    "val_accuracy": "validation accuracy per epoch (a classifier)",
    "val_map": "validation mAP@[.5:.95] per epoch (a detector)",
    "lr": "the learning rate per epoch",
    "best_epoch": "the epoch whose weights were kept (lowest val_loss)",
    "stopped_early": "1 when train.early_stopping_patience ended the training before train.epochs",
    "train_images": "images in the training split",
    "train_seconds": "wall time of the training loop",
    "train_images_per_second": "training throughput",
}
TEST_METRICS = {
    "test_accuracy": "accuracy on the test split (a classifier)",
    "test_macro_f1": "macro-F1 on the test split",
    "test_accuracy_ci95_low": "seeded 95% bootstrap interval of the test accuracy (evaluate.bootstrap_resamples)",
    "test_accuracy_ci95_high": "its upper end",
    "test_macro_f1_ci95_low": "seeded 95% bootstrap interval of the macro-F1",
    "test_macro_f1_ci95_high": "its upper end",
    "test_ece": "expected calibration error of the test answers' scores",
    "test_precision_<class>": "a class's precision",
    "test_recall_<class>": "a class's recall (a detector: its recall over 100 boxes per image)",
    "test_f1_<class>": "a class's F1",
    "test_support_<class>": "a class's test images",
    "test_map": "COCO mAP@[.5:.95] on the test split (a detector)",
    "test_map_50": "mAP at IoU 0.5",
    "test_map_75": "mAP at IoU 0.75",
    "test_map_small": "mAP of small boxes (COCO's area ranges); -1 when the test split has none",
    "test_map_medium": "mAP of medium boxes",
    "test_map_large": "mAP of large boxes",
    "test_recall": "a detector's mean recall over 100 boxes per image (COCO's mAR@100)",
    "test_map_ci95_low": "seeded 95% bootstrap interval of the test mAP",
    "test_map_ci95_high": "its upper end",
    "test_ap_<class>": "a class's AP@[.5:.95]",
    "test_tracking_hota": "a detector with evaluate.tracking: HOTA of its tracks on the videos with true tracks",
    "test_tracking_idf1": "their IDF1",
    "test_tracking_mota": "their MOTA",
    "test_tracking_id_switches": "their ID switches",
    "test_tracking_id_switches_per_track": "ID switches a true track (gate.max_id_switches_per_track)",
    "test_tracking_frames": "the frames scored",
    "test_slice_<attribute>_<value>_<metric>": "a slice's accuracy (or mAP) and recall: evaluate.slice_by columns, "
    "brightness tertiles, a detector's object sizes, `recent` production images",
    "test_invariance_<check>": "share of test images whose answer survives a flip or rotation (gate.min_invariance)",
    "test_model_size_mb": "size of the shipped ONNX file",
    "test_latency_ms": "batch-1 latency of the shipped ONNX file, as `measure` times it",
    "test_vs_champion_<name>": "the paired comparison with the champion on the same test images: both scores, "
    "the difference and its interval, McNemar's p-value, the images only one got right",
}
EXPORT_METRICS = {
    "onnx_<format>_accuracy": "test accuracy of an ONNX file (format: fp32, int8, pruned_fp32, pruned_int8)",
    "onnx_<format>_mean_ap": "test mAP@[.5:.95] of a detector's ONNX file",
    "onnx_<format>_agreement": "agreement with the torch model: top-1, or the share of its boxes found again",
    "onnx_<format>_latency_ms_b1": "median batch-1 latency, the files timed call by call in turn",
    "onnx_<format>_latency_ms_b32": "median batch-32 latency",
    "onnx_<format>_size_mb": "file size",
    "onnx_parity_max_abs_diff": "largest |output difference| between ONNX fp32 and torch on the test split",
    "pruned_parity_max_abs_diff": "with prune.enabled: the same, between the pruned ONNX fp32 file and its torch model",
    "pruned_parameters_before": "with prune.enabled: the model's parameters before pruning (`_after`: after)",
    "pruned_parameters_after": "the pruned model's parameters",
    "pruned_macs_before": "with prune.enabled: multiply-accumulates of one image before pruning",
    "pruned_macs_after": "the pruned model's multiply-accumulates of one image",
    "reference_rows": "rows of the monitoring reference (validation and test images' features)",
    "reference_model_rows": "of them, the rows whose embedding the drift projection learnt from",
    "reference_explained_variance": "variance of the embeddings the projection keeps (monitor.embedding_dims)",
    "gate_passed": "1 when every gate check passed",
}
AUDIT_METRICS = {  # the data audit's counts (cvops/data/audit.py: DataAudit.metrics)
    "audit_label_issues": "likely label errors",
    "audit_labels_ranked": "images whose label the audit judged (fewer than all: partial, out of time)",
    "audit_near_duplicates": "near-duplicate pairs within a split",
    "audit_conflicting_duplicates": "near-duplicate pairs whose labels differ",
    "audit_leaked_test": "test images with a near-copy in train (gate.max_leakage)",
    "audit_leaked_val": "validation images with a near-copy in train",
    "audit_outliers": "images far from every other image",
}
RUN_TAGS = {
    "pipeline": "the ZenML pipeline (training, monitoring, batch_inference, video)",
    "zenml_run_id": "the ZenML run that ran this",
    "zenml": "ZenML's own tag of the runs it tracks",
    "git_commit": "the project's commit when the run started",
    "git_dirty": "true when files the run does not record (code, other files) differed from that commit",
    "data_version": "DVC's hash of data/prepared in dvc.lock: the data version",
    "tracking_data": "a detector with evaluate.tracking: the tracking videos' version (digit-tracks' recipe, or the "
    "SHA-256 of your sequences' files)",
    "params_hash": "hash of every params.yaml value the run used",
    "overrides": "the values that differed from the committed params.yaml (-S, an overlay), as JSON",
    "gate": "passed or failed",
    "shipped_format": "which file ships: onnx-fp32 or onnx-int8 (with prune.enabled: onnx-pruned-fp32, -int8)",
    "train_engine": "where training ran: local or ray",
    "train_backend": "torch.distributed's backend (gloo, nccl) or none",
    "train_world_size": "training processes",
    "distilled_from": "a distilled student's run: its teacher's version",
    "drift": "a monitoring run's verdict: drift, no_drift or not_enough_data",
    "model_version": "a monitoring, batch or video run: the version it watched or scored with",
    "input": "a batch or video run: the folder, prefix or file it read",
    "output": "a batch or video run: where it wrote",
    "engine": "a batch or video run: where it ran, local or ray",
    "live_quality": "a monitoring run: the live accuracy's (a detector's: mAP's) verdict from the truths sent back",
    "champion_approved": "a monitoring run: false when the champion alias was moved outside cvops (no approval)",
    "<arm>_versions": "a compare-live run (`cvops compare-live`): the versions an arm (champion, canary, shadow) "
    "served",
    "<arm>_verdict": "a compare-live run: the arm against the champion, in words",
}
MONITORING_METRICS = {
    "window_rows": "inference-log rows the monitoring run tested",
    "drifted_columns": "how many features drifted",
    "p_<column>": "each tested feature's p-value against the reference",
    "live_labelled": "answers with a true label (a detector's: true boxes) sent back, in the window",
    "live_accuracy": "accuracy on them",
    "live_accuracy_low": "its 95% interval",
    "live_accuracy_high": "its upper end",
    "live_macro_f1": "macro-F1 on them",
    "live_recall_<class>": "a class's recall on them",
    "live_map": "a detector's mAP@[.5:.95] on them (also live_map_low, live_map_high: its 95% bootstrap interval)",
    "batch_<name>": "a batch-inference run's counts: images, scored, unreadable, boxes",
    "video_<name>": "a video run's counts (`cvops run video`): videos, unreadable, frames, a detector's tracks",
    "rows": "a compare-live run: inference-log rows compared",
    "<arm>_predictions": "a compare-live run: answers an arm gave",
    "<arm>_error_rate": "its share of failed requests",
    "<arm>_latency_p50_ms": "its median latency (also _p95_ms) and mean score (`<arm>_score_mean`)",
    "<arm>_p_<name>": "the test of the arm's answers against the champion's: p-value",
    "<arm>_agreement": "a shadow's agreement with the champion on the same images",
}
VERSION_TAGS = {
    "model_info": "what the service, export and explanation load (JSON: task, classes, preprocessing)",
    "onnx_shipped": "MLflow URI of the ONNX file that ships",
    "onnx_<format>": "MLflow URI of each ONNX file",
    "shipped_format": "onnx-fp32, onnx-int8, onnx-pruned-fp32 or onnx-pruned-int8",
    "shipped_score": "that file's test score: accuracy, or mAP for a detector",
    "accuracy": "headline test accuracy (a classifier)",
    "macro_f1": "headline test macro-F1 (a classifier)",
    "map": "headline test mAP (a detector)",
    "map_50": "headline test mAP@.5 (a detector)",
    "gate": "passed or failed",
    "reference": "MLflow URI of the monitoring reference folder",
    "reference_rows": "its rows",
    "model_card": "link to the HTML model card",
    "bento": "the bento built for the version (BentoML tag)",
    "bentoml_model": "the ONNX model in BentoML's store",
    "data_counts": "images per source and class (JSON): the model card's data growth",
    "approval": "pending, approved or rejected",
    "approved_by": "who promoted it (on a team stack: the MLflow user the server authenticated)",
    "approved_at": "when",
    "approval_note": "the reviewer's note (`--note`), or the reason of a rejection or rollback",
    "approved_via": "a service account that promoted it on a person's behalf",
    "trained_by": "the MLflow user who trained it (team stack: four eyes compare it with the reviewer)",
    "distilled_from": "a distilled student: its teacher's version",
    "gate_failed_checks": "the gate checks a re-quantized version failed (`cvops quantize`)",
    "rejected_by": "who rejected it (`approval_note`: why)",
    "rejected_at": "when",
    "rolled_back_by": "who rolled the champion back from this version (also `rolled_back_at`, `rollback_reason`)",
    "restored_by": "who restored this version as champion by a rollback (also `restored_at`, `restore_reason`)",
    **{
        key: f"lineage, as on the run: {meaning}"
        for key, meaning in RUN_TAGS.items()
        if key
        in (
            "git_commit",
            "git_dirty",
            "data_version",
            "params_hash",
            "zenml_run_id",
            "pipeline",
            "overrides",
            "train_engine",
            "train_backend",
            "train_world_size",
        )
    },
}
ALIASES = {
    "champion": "the version the service serves and batch inference scores with",
    "challenger": "the version that passed its gate and awaits review",
    "previous": "the champion before the current one: `cvops models rollback` returns to it",
}
MODEL_TAGS = {
    "cvops.champion": "the champion's version, written with the alias under the registry lock (the service follows it)",
}
ARTIFACTS = {
    "evaluation/": "confusion matrix, error gallery and Grad-CAM sheets, evaluation.json",
    "gate/": "gate.json and gate.txt: every check with its value, limit and verdict",
    "model_card/": "the model card, Markdown and self-contained HTML, with its pictures",
    "onnx/": "model.fp32.onnx, model.int8.onnx (model.pruned.*.onnx with prune.enabled) and quantization.json "
    "(what ships and why)",
    "reference/": "the monitoring reference: features of validation and test images, the embedding projection",
    "validation/": "the data validation report (HTML, JSON)",
    "audit/": "the data audit's reports: audit.json (every finding), audit.html (with thumbnails)",
    "lineage/": "the params.yaml and dvc.lock the run used",
    "compare_live/": "a compare-live run's report",
    "drift/": "a monitoring run's Evidently reports (HTML, JSON)",
}

NAMES = {
    "Training runs: metrics": TRAINING_METRICS | AUDIT_METRICS | TEST_METRICS | EXPORT_METRICS,
    "Training runs: tags": RUN_TAGS,
    "Monitoring and batch runs: metrics": MONITORING_METRICS,
    "Registered versions: tags": VERSION_TAGS,
    "Registered versions: aliases": ALIASES,
    "Registered model: tags": MODEL_TAGS,
    "Runs: artifacts": ARTIFACTS,
}


def undocumented(names: list[str], documented: dict[str, str]) -> list[str]:
    """The `names` that match no documented name (a `<placeholder>` matches any non-empty text)."""
    patterns = [re.compile("^" + re.sub(r"<\w+>", ".+", re.escape(name)) + "$") for name in documented]
    return [name for name in names if not any(pattern.match(name) for pattern in patterns)]
