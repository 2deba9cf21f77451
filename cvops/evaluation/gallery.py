"""The error gallery: the test images a classifier gets most confidently wrong and those it gets right with the
least confidence, a few per true class, and a challenger's disagreements with the champion, as data and as
captioned contact sheets a reviewer looks at."""

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from cvops.evaluation.reports import KIND_TITLES, Gallery, GalleryImage, Kind

TILE = 112  # pixels of an image on a sheet (small images are enlarged without smoothing)
CAPTION = 40  # pixels of caption (three lines) under each image


def pick_errors(labels: np.ndarray, proba: np.ndarray, per_class: int) -> list[tuple[Kind, int]]:
    """Per true class, the `per_class` wrong answers with the highest score and the `per_class` right answers
    with the lowest, as (kind, row) in class order; ties keep the test split's order."""
    predicted, score = proba.argmax(axis=1), proba.max(axis=1)
    picked: list[tuple[Kind, int]] = []
    for label in range(proba.shape[1]):
        of_class = labels == label
        wrong = np.flatnonzero(of_class & (predicted != labels))
        right = np.flatnonzero(of_class & (predicted == labels))
        picked += [("wrong", int(i)) for i in wrong[np.argsort(-score[wrong], kind="stable")][:per_class]]
        picked += [("unsure", int(i)) for i in right[np.argsort(score[right], kind="stable")][:per_class]]
    return picked


def pick_disagreements(labels: np.ndarray, ours: np.ndarray, theirs: np.ndarray, per_class: int) -> list[int]:
    """Per true class, the `per_class` images where two models' answers differ and the surer of the two is
    surest: the most striking disagreements first."""
    differ = ours.argmax(axis=1) != theirs.argmax(axis=1)
    sureness = np.maximum(ours.max(axis=1), theirs.max(axis=1))
    picked: list[int] = []
    for label in range(ours.shape[1]):
        rows = np.flatnonzero(differ & (labels == label))
        picked += [int(i) for i in rows[np.argsort(-sureness[rows], kind="stable")][:per_class]]
    return picked


def build_gallery(
    images: np.ndarray,
    labels: np.ndarray,
    proba: np.ndarray,
    manifest: pd.DataFrame,
    class_names: list[str],
    per_class: int,
    out_dir: Path,
    champion_proba: np.ndarray | None = None,
) -> Gallery:
    """The gallery of one model on the test split (with the champion's answers on the same images, when given),
    its sheets drawn under `out_dir`."""
    if per_class == 0:
        return Gallery()

    def entry(kind: Kind, row: int) -> GalleryImage:
        answer = int(proba[row].argmax())
        found = GalleryImage(
            kind=kind,
            index=row,
            path=str(manifest["path"].iloc[row]),
            true=class_names[labels[row]],
            predicted=class_names[answer],
            score=float(proba[row, answer]),
        )
        if kind == "disagree" and champion_proba is not None:
            theirs = int(champion_proba[row].argmax())
            found.champion, found.champion_score = class_names[theirs], float(champion_proba[row, theirs])
        return found

    picked = pick_errors(labels, proba, per_class)
    if champion_proba is not None:
        picked += [("disagree", row) for row in pick_disagreements(labels, proba, champion_proba, per_class)]
    gallery = Gallery(per_class=per_class, images=[entry(kind, row) for kind, row in picked])
    for kind in KIND_TITLES:
        if chosen := gallery.of(kind):
            path = out_dir / f"gallery_{kind}.png"
            draw_sheet([images[image.index] for image in chosen], [image.caption() for image in chosen], path)
            gallery.sheets[kind] = str(path)
    return gallery


def draw_sheet(tiles: list[np.ndarray], captions: list[str], path: Path, columns: int = 6) -> Path:
    """A contact sheet: each image (H, W, 3 uint8) enlarged to TILE pixels, with its caption under it."""
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    cell_w, cell_h = TILE + 8, TILE + CAPTION + 8
    sheet = Image.new("RGB", (columns * cell_w + 8, rows * cell_h + 8), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=10)
    for i, (tile, caption) in enumerate(zip(tiles, captions, strict=True)):
        x, y = 8 + (i % columns) * cell_w, 8 + (i // columns) * cell_h
        picture = Image.fromarray(tile)
        resample = Image.Resampling.NEAREST if max(picture.size) < TILE else Image.Resampling.BILINEAR
        sheet.paste(picture.resize((TILE, TILE), resample), (x, y))
        draw.multiline_text((x, y + TILE + 2), caption, fill="black", font=font, spacing=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
