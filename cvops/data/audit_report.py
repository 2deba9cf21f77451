"""The data audit's reports: reports/audit.json (every finding) and reports/audit.html (the findings a person
reviews, each with its thumbnail)."""

import base64
import html
import io
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import ValidationError

from cvops.config import Params, Project
from cvops.data.audit import DataAudit, Finding, NearDuplicate, audit_dataset, audited_rows
from cvops.data.prepare import DatasetRef

AUDIT_JSON, AUDIT_HTML = "audit.json", "audit.html"
SHOWN = 200  # findings of a kind the page shows (the JSON holds all)
THUMB = 64  # pixels


def _thumbnail(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image)).resize((THUMB, THUMB), Image.Resampling.NEAREST).save(buffer, "PNG")
    return f"<img src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}' alt=''>"


def _write(path: Path, text: str) -> None:
    """Write `text` whole or not at all: a temp file renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_audit_reports(audit: DataAudit, images: np.ndarray, paths: list[str], reports_dir: Path) -> tuple[Path, Path]:
    """audit.json and audit.html in `reports_dir`; `images` are the audited images, `paths` their manifest paths."""
    index = {path: i for i, path in enumerate(paths)}

    def thumb(finding: Finding) -> str:
        return _thumbnail(images[index[finding.path]])

    def name(finding: Finding) -> str:
        label = f" <b>{html.escape(finding.label)}</b>" if finding.label is not None else ""
        return f"{html.escape(finding.path)} ({finding.split}){label}"

    def pair_rows(pairs: list[NearDuplicate]) -> str:
        return "".join(
            f"<tr><td>{thumb(p.first)}</td><td>{thumb(p.second)}</td><td>{name(p.first)}<br>{name(p.second)}</td>"
            f"<td>{p.hash_bits}</td><td>{p.similarity:.3f}</td><td>{'yes' if p.conflicting else ''}</td></tr>"
            for p in pairs[:SHOWN]
        )

    pair_head = (
        "<tr><th></th><th></th><th>images</th><th>hash bits apart</th><th>similarity</th><th>labels differ</th></tr>"
    )
    leaks = sorted(audit.leaks, key=lambda p: (p.held_out().split != "test", p.hash_bits))
    duplicates = sorted(audit.duplicates, key=lambda p: (not p.conflicting, p.hash_bits))
    issues = "".join(
        f"<tr><td>{thumb(i)}</td><td>{name(i)}</td><td>{html.escape(i.suspected)}</td><td>{i.quality:.3f}</td></tr>"
        for i in audit.label_issues[:SHOWN]
    )
    outliers = "".join(
        f"<tr><td>{thumb(o)}</td><td>{name(o)}</td><td>{o.score:.1f}</td></tr>" for o in audit.outliers[:SHOWN]
    )
    note = f"<p><b>{html.escape(audit.note)}</b></p>" if audit.note else ""
    body = (
        f"<h1>Data audit</h1><p>{html.escape(audit.summary())}.</p>{note}"
        f"<p>Data version <code>{html.escape(audit.data_version or 'unversioned')}</code>; seconds: "
        f"{html.escape(', '.join(f'{k} {v:g}' for k, v in audit.seconds.items()))}. "
        f"The JSON report ({AUDIT_JSON}) holds every finding; this page shows up to {SHOWN} of each kind.</p>"
        f"<h2>Leaked: val and test images with a near-copy in train ({len(leaks)})</h2>"
        "<p>The model sees them in training and is then scored on them: its test numbers are too high. Remove one "
        "of each pair from the data, or move them into one split.</p>"
        f"<table>{pair_head}{pair_rows(leaks)}</table>"
        f"<h2>Near-duplicates within a split ({len(duplicates)})</h2>"
        f"<table>{pair_head}{pair_rows(duplicates)}</table>"
        f"<h2>Likely label errors ({len(audit.label_issues)} of {audit.labels_ranked} judged)</h2>"
        "<p>Likeliest wrong first: the given label's probability from a fit that did not see the image.</p>"
        "<table><tr><th></th><th>image (split) given label</th><th>suspected</th><th>given label's probability</th>"
        f"</tr>{issues}</table>"
        f"<h2>Outliers ({len(audit.outliers)})</h2><p>Far from every other image: another domain, a broken file, a "
        "wrong crop?</p><table><tr><th></th><th>image (split) label</th><th>score (robust z)</th></tr>"
        f"{outliers}</table>"
    )
    json_path, html_path = reports_dir / AUDIT_JSON, reports_dir / AUDIT_HTML
    _write(json_path, audit.model_dump_json(indent=2))
    _write(
        html_path,
        "<!doctype html><html><head><meta charset='utf-8'><title>cvops data audit</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem;vertical-align:middle}"
        f"img{{image-rendering:pixelated}}</style></head><body>{body}</body></html>\n",
    )
    return json_path, html_path


def _earlier(json_path: Path) -> DataAudit | None:
    """The last audit's findings (None: none, or written by another cvops)."""
    try:
        return DataAudit.model_validate_json(json_path.read_text(encoding="utf-8"))
    except (OSError, ValidationError):
        return None


def audit_project(project: Project, dataset: DatasetRef, params: Params) -> tuple[DataAudit, Path]:
    """Audit the project's prepared `dataset` as params.audit says, or keep the last audit's findings when data
    and settings are the same; the reports go to reports/ (the HTML's path is returned; with the audit off,
    nothing is written)."""
    from cvops.training.models import resolve_device

    json_path, html_path = project.reports_dir / AUDIT_JSON, project.reports_dir / AUDIT_HTML
    earlier = _earlier(json_path) if html_path.is_file() else None
    audit = audit_dataset(dataset, params.audit, params.base.seed, resolve_device(params.base.device), earlier)
    if not audit.enabled or audit is earlier:
        return audit, html_path
    rows, images = audited_rows(dataset)
    _, html_path = write_audit_reports(audit, images, rows["path"].astype(str).tolist(), project.reports_dir)
    return audit, html_path
