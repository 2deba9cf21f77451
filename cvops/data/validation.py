"""Data validation: image-level checks on the files on disk plus a great-expectations suite.

The files under data/raw are inspected afresh (not trusted from the manifest): each must decode
fully, have an allowed mode and size, sit in a declared class folder, and be unique. Class
counts and balance are checked too. The result names every failed check and its files.
"""

import hashlib
import html
import io
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from pydantic import BaseModel

from cvops.config import Project, ValidateParams
from cvops.console import progress
from cvops.data.manifest import BOXES, MANIFEST, read_manifest
from cvops.data.preprocess import image_mode, oriented_size, to_rgb
from cvops.errors import NotInitializedError
from cvops.tasks.detection.boxes import CLASSES, COORDS, read_boxes, read_classes

SHOWN = 5  # offending files named per check in the summary
log = logging.getLogger(__name__)


class Check(BaseModel):
    """One validation check: what it demands, whether it held, and what broke it."""

    name: str
    expectation: str
    passed: bool
    failed: int = 0
    offenders: list[str] = []


class ValidationReport(BaseModel):
    passed: bool
    num_files: int
    checks: list[Check]
    quarantined: list[str] = []
    gx_results: list[dict[str, Any]] = []

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        """One screen: each failed check, how many files, and the first offending paths."""
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [f"data validation {verdict}: {len(self.checks)} checks on {self.num_files} files"]
        if self.quarantined:
            lines.append(f"  quarantined {len(self.quarantined)} files (listed in data/validated/quarantine.csv)")
        for check in self.failed_checks:
            shown = ", ".join(check.offenders[:SHOWN]) + (" ..." if len(check.offenders) > SHOWN else "")
            lines.append(f"  x {check.name}: {check.failed} failing — {check.expectation}: {shown}")
        return "\n".join(lines)


def decode_fully(data: bytes) -> tuple[int, int, str]:
    """Width and height as displayed, and the mode, of an image decoded fully into the RGB pixels training and
    serving make of it: a bad file raises here (PIL raises OSError, SyntaxError, ValueError...)."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = oriented_size(image)
        mode = image_mode(image)
        to_rgb(image)
    return width, height, mode


def inspect_files(raw_dir: Path) -> pd.DataFrame:
    """One row per file under raw_dir/<class>/: its label, hash, whether it decodes (into the RGB pixels
    training and serving would make of it), its mode and its size as displayed."""
    if not (raw_dir / MANIFEST).is_file():
        raise NotInitializedError(f"no imported dataset in {raw_dir}: run `cvops data import SOURCE` first")
    files = sorted(
        f for f in raw_dir.glob("*/**/*") if f.is_file() and not any(p.startswith(".") for p in f.parts[-2:])
    )
    rows = []
    for file in progress(files, "validate"):
        data = file.read_bytes()
        row: dict[str, Any] = {
            "path": file.relative_to(raw_dir).as_posix(),
            "label": file.relative_to(raw_dir).parts[0],
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "decodes": False,
            "error": "",
            "mode": "",
            "width": 0,
            "height": 0,
            "aspect_ratio": 0.0,
        }
        try:
            width, height, mode = decode_fully(data)
            row.update(
                decodes=True,
                mode=mode,
                width=width,
                height=height,
                aspect_ratio=max(width, height) / min(width, height),
            )
        except Exception as err:  # PIL raises OSError, SyntaxError, ValueError... for bad files
            row["error"] = f"{type(err).__name__}: {err}"[:200] if data else "empty file"
        rows.append(row)
    columns = ["path", "label", "sha256", "bytes", "decodes", "error", "mode", "width", "height", "aspect_ratio"]
    return pd.DataFrame(rows, columns=columns)


def _gx_validate(frame: pd.DataFrame, expectations: list[Any], index_column: str) -> list[Any]:
    """Validate `frame` with an ephemeral great-expectations context; results name rows by `index_column`."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("cvops").add_dataframe_asset("frame")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame})
    suite = gx.ExpectationSuite(name="cvops", expectations=expectations)
    result = batch.validate(
        suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [index_column]}
    )
    return list(result.results)


def _to_check(name: str, expectation: str, result: Any, index_column: str) -> Check:
    outcome = result.result or {}
    offenders = [str(row.get(index_column)) for row in outcome.get("unexpected_index_list") or []]
    return Check(
        name=name,
        expectation=expectation,
        passed=bool(result.success),
        failed=int(outcome.get("unexpected_count") or len(offenders)),
        offenders=offenders,
    )


Expectations = list[tuple[str, str, Any]]  # (check name, what it demands, its great-expectations expectation)


def run_checks(
    files: pd.DataFrame, classes: list[str], params: ValidateParams, boxes: pd.DataFrame | None = None
) -> tuple[list[Check], list[dict]]:
    """The suite over inspected files: row checks name files, class checks name classes; with a detection
    dataset's `boxes` (from `box_frame`), box checks name annotations, and classes count boxes, not files."""
    all_files, images = _file_checks(classes, params, detection=boxes is not None)
    groups = [(files, all_files, "path"), (files[files["decodes"]].reset_index(drop=True), images, "path")]
    if boxes is not None:
        groups += _box_checks(boxes, classes, params)
    labels = files["label"] if boxes is None else boxes.loc[boxes["found"], "label"]
    unit = "images" if boxes is None else "boxes"
    groups.append((_class_counts(labels, classes), _class_checks(params, unit), "label"))
    checks: list[Check] = []
    raw_results: list[Any] = []
    for frame, group, index in groups:
        results = _gx_validate(frame, [e for _, _, e in group], index)
        checks += [_to_check(n, d, r, index) for (n, d, _), r in zip(group, results, strict=True)]
        raw_results += results
    return checks, [r.to_json_dict() for r in raw_results]


def _file_checks(classes: list[str], params: ValidateParams, detection: bool) -> tuple[Expectations, Expectations]:
    """The checks of every file, and of the files that decode (only they have a mode and a size)."""
    import great_expectations.expectations as gxe

    all_files = [
        ("decodes", "every file decodes fully", gxe.ExpectColumnValuesToBeInSet(column="decodes", value_set=[True])),
        (
            "classes",
            f"class folder in the declared set {classes}",
            gxe.ExpectColumnValuesToBeInSet(column="label", value_set=classes),
        ),
        (
            "duplicates",
            "no two files with the same content (sha256)",
            gxe.ExpectColumnValuesToBeUnique(column="sha256"),
        ),
    ]
    if detection:  # an image's classes are its boxes'
        all_files = [check for check in all_files if check[0] != "classes"]
    images = [
        (
            "mode",
            f"mode in validate.allowed_modes {params.allowed_modes}",
            gxe.ExpectColumnValuesToBeInSet(column="mode", value_set=params.allowed_modes),
        ),
        (
            "width",
            f"width within [{params.min_size}, {params.max_size}]",
            gxe.ExpectColumnValuesToBeBetween(column="width", min_value=params.min_size, max_value=params.max_size),
        ),
        (
            "height",
            f"height within [{params.min_size}, {params.max_size}]",
            gxe.ExpectColumnValuesToBeBetween(column="height", min_value=params.min_size, max_value=params.max_size),
        ),
    ]
    if params.max_aspect_ratio is not None:  # a 4000x12 sliver would be squeezed (or padded) past recognition
        images.append(
            (
                "aspect_ratio",
                f"longer side / shorter side <= validate.max_aspect_ratio = {params.max_aspect_ratio}",
                gxe.ExpectColumnValuesToBeBetween(column="aspect_ratio", max_value=params.max_aspect_ratio),
            )
        )
    return all_files, images


def _class_counts(labels: pd.Series, classes: list[str]) -> pd.DataFrame:
    """A row per declared class: its count in `labels` and its ratio to the smallest class."""
    counts = labels.value_counts().reindex(classes, fill_value=0).rename_axis("label").reset_index(name="count")
    smallest = max(int(counts["count"].min()), 1)
    counts["imbalance"] = counts["count"] / smallest
    return counts


def _class_checks(params: ValidateParams, unit: str) -> Expectations:
    """The checks of the class counts (`_class_counts`), of images or of boxes (`unit`)."""
    import great_expectations.expectations as gxe

    return [
        (
            "min_per_class",
            f"at least {params.min_per_class} {unit} per class",
            gxe.ExpectColumnValuesToBeBetween(column="count", min_value=params.min_per_class),
        ),
        (
            "imbalance",
            f"largest/smallest class <= {params.max_imbalance_ratio} ({unit})",
            gxe.ExpectColumnValuesToBeBetween(column="imbalance", max_value=params.max_imbalance_ratio),
        ),
    ]


def box_frame(boxes: pd.DataFrame, files: pd.DataFrame, classes: list[str], duplicate_iou: float) -> pd.DataFrame:
    """The box table with what the box checks read: a `name` that says which annotation on which image,
    whether its image is there (`found`) and decodes (`sized`), whether it lies inside that image, its
    shorter side, and whether it repeats an earlier box of its class on its image (IoU >= duplicate_iou)."""
    frame = boxes.reset_index(drop=True).copy()
    where = frame["image"].where(frame["image"] != "", frame["source_image"])
    unknown = np.where(frame["label"].isin(classes), "", " (category " + frame["category"].astype(str) + ")")
    frame["name"] = "annotation " + frame["annotation"].astype(str) + " in " + where + unknown
    sizes = files.set_index("path")
    frame["found"] = frame["image"].isin(sizes.index)
    decoded = sizes.index[sizes["decodes"]]
    frame["sized"] = frame["image"].isin(decoded)
    width = frame["image"].map(sizes["width"]).astype(float)
    height = frame["image"].map(sizes["height"]).astype(float)
    x1, y1, x2, y2 = (frame[c].astype(float) for c in COORDS)
    frame["inside"] = (x1 >= 0) & (y1 >= 0) & (x2 <= width) & (y2 <= height)
    frame["has_area"] = (x2 > x1) & (y2 > y1)
    frame["min_side"] = np.minimum(x2 - x1, y2 - y1).where(frame["has_area"])  # no area: box_area's alone
    frame["duplicate"] = False
    for _, group in frame[frame["found"]].groupby(["image", "label"]):
        coords = group[COORDS].to_numpy(dtype=float)
        for i in range(1, len(coords)):
            if (pairwise_iou(coords[i : i + 1], coords[:i])[0] >= duplicate_iou).any():
                frame.loc[group.index[i], "duplicate"] = True
    return frame


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (N,4) with every box of `b` (M,4), boxes as x1, y1, x2, y2: (N, M)."""
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _box_checks(
    boxes: pd.DataFrame, classes: list[str], params: ValidateParams
) -> list[tuple[pd.DataFrame, list, str]]:
    """Box checks: every box (image there, known category), then the boxes on images that decode (geometry)."""
    import great_expectations.expectations as gxe

    every = [
        (
            "box_image",
            "every annotation's image is in the dataset",
            gxe.ExpectColumnValuesToBeInSet(column="found", value_set=[True]),
        ),
        (
            "box_category",
            f"every box's category in the declared set {classes}",
            gxe.ExpectColumnValuesToBeInSet(column="label", value_set=classes),
        ),
    ]
    geometry = [
        (
            "box_inside",
            "every box inside its image (0 <= x1, y1 and x2 <= width, y2 <= height)",
            gxe.ExpectColumnValuesToBeInSet(column="inside", value_set=[True]),
        ),
        (
            "box_area",
            "every box has an area (x2 > x1 and y2 > y1)",
            gxe.ExpectColumnValuesToBeInSet(column="has_area", value_set=[True]),
        ),
        (
            "box_size",
            f"every box at least validate.min_box_size = {params.min_box_size} px each side",
            gxe.ExpectColumnValuesToBeBetween(column="min_side", min_value=params.min_box_size),
        ),
        (
            "box_duplicates",
            f"no box twice: one image and class, IoU >= validate.duplicate_iou = {params.duplicate_iou}",
            gxe.ExpectColumnValuesToBeInSet(column="duplicate", value_set=[False]),
        ),
    ]
    return [(boxes, every, "name"), (boxes[boxes["sized"]].reset_index(drop=True), geometry, "name")]


def declared_classes(raw_dir: Path, params: ValidateParams) -> list[str]:
    """The declared class set: validate.classes, else the classes the import recorded (for detection, the
    categories the source declares)."""
    if params.classes:
        return list(params.classes)
    if (raw_dir / BOXES).is_file():
        return read_classes(raw_dir)
    return sorted(read_manifest(raw_dir)["label"].unique())


def _bad_rows(files: pd.DataFrame, checks: list[Check], boxes: pd.DataFrame | None) -> pd.Series:
    """Files a quarantine removes: those failing a row check (for duplicates, all copies but the first), and
    the images of boxes failing a box check (an image loses no box: a dropped box would teach background)."""
    bad = pd.Series(False, index=files.index)
    for check in checks:
        if check.name == "duplicates":
            bad |= files.duplicated("sha256", keep="first")
        elif boxes is not None and check.name.startswith("box_"):
            bad |= files["path"].isin(boxes.loc[boxes["name"].isin(check.offenders), "image"])
        elif check.name not in ("min_per_class", "imbalance"):
            bad |= files["path"].isin(check.offenders)
    return bad


def validate_dataset(raw_dir: Path, validated_dir: Path, params: ValidateParams) -> ValidationReport:
    """Validate data/raw; on success write data/validated (accepted manifest + quarantine), atomically.

    With `on_error: quarantine`, failing files are moved out of the dataset into the quarantine
    folder and the rest is checked again: it must then pass on its own. For detection, an image with a bad
    box goes with all its boxes, and annotations whose image is missing are dropped (and listed).
    """
    classes = declared_classes(raw_dir, params)
    files = inspect_files(raw_dir)
    num_files = len(files)
    detection = (raw_dir / BOXES).is_file()
    boxes = box_frame(read_boxes(raw_dir), files, classes, params.duplicate_iou) if detection else None
    checks, gx_results = run_checks(files, classes, params, boxes)
    quarantined = pd.DataFrame(columns=["path", "reasons"])
    if params.on_error == "quarantine" and not all(c.passed for c in checks):
        bad = _bad_rows(files, checks, boxes)
        reasons = {p: [c.name for c in checks if p in c.offenders] for p in files.loc[bad, "path"]}
        if boxes is not None:
            for check in (c for c in checks if c.name.startswith("box_")):
                for image in boxes.loc[boxes["name"].isin(check.offenders), "image"]:
                    if image in reasons and check.name not in reasons[image]:
                        reasons[image].append(check.name)
            orphans = boxes.loc[~boxes["found"], "name"].tolist()
            reasons |= {name: ["box_image"] for name in orphans}
            boxes = boxes[boxes["found"] & ~boxes["image"].isin(files.loc[bad, "path"])].reset_index(drop=True)
        quarantined = pd.DataFrame({"path": list(reasons), "reasons": [";".join(r) for r in reasons.values()]})
        files = files.loc[~bad].reset_index(drop=True)
        checks, gx_results = run_checks(files, classes, params, boxes)
    report = ValidationReport(
        passed=all(c.passed for c in checks),
        num_files=num_files,
        checks=checks,
        quarantined=quarantined["path"].tolist(),
        gx_results=gx_results,
    )
    if report.passed:
        _write_validated(raw_dir, validated_dir, files, quarantined, boxes)
    else:
        shutil.rmtree(validated_dir, ignore_errors=True)  # never leave an old "validated" set beside a failure
    return report


def validate_configured(project: Project) -> tuple[ValidationReport, Path]:
    """What the DVC `validate` stage runs: validate data/raw as params.yaml says, and write the reports.
    Returns the report and the HTML report's path."""
    report = validate_dataset(project.raw_dir, project.validated_dir, project.params().validation)
    _, html_report = write_reports(report, project.reports_dir)
    return report, html_report


def _write_validated(
    raw_dir: Path, validated_dir: Path, files: pd.DataFrame, quarantined: pd.DataFrame, boxes: pd.DataFrame | None
) -> None:
    manifest = read_manifest(raw_dir)
    accepted = manifest[manifest["path"].isin(files["path"])]
    validated_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{validated_dir.name}.writing-", dir=validated_dir.parent))
    try:
        accepted.to_csv(staging / MANIFEST, index=False)
        if boxes is not None:  # the accepted images' boxes, as imported
            raw_boxes = read_boxes(raw_dir)
            raw_boxes[raw_boxes["image"].isin(accepted["path"])].to_csv(staging / BOXES, index=False)
            shutil.copy2(raw_dir / CLASSES, staging / CLASSES)
        quarantined.to_csv(staging / "quarantine.csv", index=False)
        for rel in quarantined["path"]:
            if (raw_dir / rel).is_file():  # not a dropped annotation's name
                target = staging / "quarantine" / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(raw_dir / rel, target)
        shutil.rmtree(validated_dir, ignore_errors=True)
        staging.rename(validated_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_reports(report: ValidationReport, reports_dir: Path) -> tuple[Path, Path]:
    """validation.json (summary + great-expectations results) and a readable validation.html."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = reports_dir / "validation.json", reports_dir / "validation.html"
    json_path.write_text(
        json.dumps(report.model_dump(mode="json"), indent=1, default=str, ensure_ascii=False), encoding="utf-8"
    )
    rows = "".join(
        f"<tr class={'ok' if c.passed else 'bad'}><td>{'PASS' if c.passed else 'FAIL'}</td>"
        f"<td>{html.escape(c.name)}</td><td>{html.escape(c.expectation)}</td><td>{c.failed}</td>"
        f"<td>{'<br>'.join(html.escape(o) for o in c.offenders[:50])}{' ...' if len(c.offenders) > 50 else ''}"
        "</td></tr>"
        for c in report.checks
    )
    quarantine = "".join(f"<li>{html.escape(p)}</li>" for p in report.quarantined)
    html_path.write_text(
        encoding="utf-8",
        data="<!doctype html><meta charset=utf-8><title>cvops data validation</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:4px 8px;"
        "vertical-align:top}table{border-collapse:collapse}.ok td:first-child{color:#080}"
        ".bad td:first-child{color:#c00;font-weight:bold}</style>"
        f"<h1>Data validation: {'passed' if report.passed else 'FAILED'}</h1><p>{report.num_files} files, "
        f"{len(report.checks)} checks (great-expectations {_gx_version()}).</p>"
        "<table><tr><th>verdict</th><th>check</th><th>expectation</th><th>failing</th><th>offenders</th></tr>"
        f"{rows}</table>"
        + (f"<h2>Quarantined ({len(report.quarantined)})</h2><ul>{quarantine}</ul>" if report.quarantined else ""),
    )
    return json_path, html_path


def _gx_version() -> str:
    from importlib.metadata import version

    return version("great-expectations")
