"""Benchmark: does the data audit find what was planted, and is acting on it worth a reviewer's time?

1. Label flips planted in Fashion-MNIST (digits is nearly separable: too easy), uniform (any other class) and
   class-conditional (each class to its look-alike: shirt <-> T-shirt, pullover <-> coat, sandal <-> sneaker,
   trouser <-> dress, bag <-> ankle boot), at 2%, 5% and 10%: the precision and recall of the images the audit
   flags (its own threshold: confident learning), and the precision of its k likeliest for k = the number
   planted. Fashion-MNIST's own label errors count against the precision: nobody knows them.
2. Near-copies planted across splits: 100 images each resized (3x up, then down as prepare does), recompressed
   as JPEG (quality 75) and cropped 5% (at a random offset), in test, their originals among 1,000 distinct
   images in train: the share found, and the pairs found among the 1,000 distinct images (false pairs, unless
   Fashion-MNIST itself holds the copy: the table counts them and the JSON names them).
3. Relabelling: at 5% uniform noise, a reviewer corrects the flagged images, or as many random images; the
   accuracy on the clean test split of a logistic regression on the embeddings fit to each corrected train split.
4. The audit's cost on the demo's data: ELPV's 2,624 images at 128 px, every part timed.

The embeddings are computed once per image set (the audit's own `embed`); each noise setting is ranked by the
audit's own `rank_labels`, with its defaults (5 folds). One seed.

Usage: python bench/audit.py [--per-class 500] [--seed 42]
Writes bench/results/audit.json and prints markdown tables.
"""

import argparse
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cvops.env import OFFLINE_ENV  # noqa: E402

os.environ.update(OFFLINE_ENV)

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from cvops.config import AuditParams  # noqa: E402
from cvops.data import audit  # noqa: E402
from cvops.data.prepare import DatasetRef  # noqa: E402
from cvops.data.preprocess import resize_image  # noqa: E402
from cvops.data.sources import FASHION_MNIST_CLASSES, fashion_mnist_source  # noqa: E402

SIZE = 128  # prepare.image_size's default
LOOK_ALIKE = {  # class-conditional flips: each class to the one it is mistaken for
    "t-shirt_top": "shirt",
    "shirt": "t-shirt_top",
    "pullover": "coat",
    "coat": "pullover",
    "sandal": "sneaker",
    "sneaker": "sandal",
    "trouser": "dress",
    "dress": "trouser",
    "bag": "ankle_boot",
    "ankle_boot": "bag",
}


def prepared(image: Image.Image) -> np.ndarray:
    return resize_image(image, SIZE, "stretch")


def fashion(per_class: int) -> tuple[list[Image.Image], np.ndarray]:
    source = fashion_mnist_source(limit=per_class)
    images, labels = [], []
    for sample in source.samples:
        images.append(sample.image.copy())
        labels.append(list(FASHION_MNIST_CLASSES).index(sample.label))
    return images, np.array(labels)


def flip(labels: np.ndarray, share: float, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    noisy, chosen = labels.copy(), rng.choice(len(labels), round(share * len(labels)), replace=False)
    names = list(FASHION_MNIST_CLASSES)
    if kind == "uniform":
        noisy[chosen] = (labels[chosen] + rng.integers(1, len(names), len(chosen))) % len(names)
    else:
        noisy[chosen] = [names.index(LOOK_ALIKE[names[label]]) for label in labels[chosen]]
    return noisy, chosen


def label_rows(embeddings: np.ndarray, labels: np.ndarray, seed: int, rng: np.random.Generator) -> list[dict]:
    rows, defaults = [], AuditParams()
    for kind in ("uniform", "class-conditional"):
        for share in (0.02, 0.05, 0.10):
            noisy, planted = flip(labels, share, kind, rng)
            started = time.perf_counter()
            ranking = audit.rank_labels(
                embeddings, noisy, len(FASHION_MNIST_CLASSES), defaults.folds, defaults.max_label_probability, seed
            )
            seconds = time.perf_counter() - started
            flagged = np.array([i for i, _, _ in ranking.issues], dtype=int)
            by_quality = sorted(ranking.issues, key=lambda issue: issue[2])[: len(planted)]
            hits, top_hits = np.isin(flagged, planted).sum(), np.isin([i for i, _, _ in by_quality], planted).sum()
            rows.append(
                {
                    "flips": kind,
                    "noise": share,
                    "planted": len(planted),
                    "flagged": len(flagged),
                    "precision": round(float(hits) / max(len(flagged), 1), 3),
                    "recall": round(float(hits) / len(planted), 3),
                    "top_k_precision": round(float(top_hits) / len(planted), 3),
                    "seconds": round(seconds, 1),
                }
            )
            print(rows[-1], flush=True)
    return rows


def relabel_rows(embeddings: np.ndarray, labels: np.ndarray, seed: int, rng: np.random.Generator) -> list[dict]:
    """At 5% uniform noise on a train split, test accuracy after correcting the flagged or as many random images."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(len(labels)), test_size=0.3, stratify=labels, random_state=seed)
    noisy, planted = flip(labels[train], 0.05, "uniform", rng)
    defaults = AuditParams()
    ranking = audit.rank_labels(
        embeddings[train], noisy, len(FASHION_MNIST_CLASSES), defaults.folds, defaults.max_label_probability, seed
    )
    flagged = np.array([i for i, _, _ in ranking.issues], dtype=int)
    random = rng.choice(len(train), len(flagged), replace=False)

    def accuracy(fixed: np.ndarray) -> float:
        corrected = noisy.copy()
        corrected[fixed] = labels[train][fixed]  # the reviewer sets the true label
        model = LogisticRegression(C=audit.LOGISTIC_C, max_iter=500)
        model.fit(embeddings[train], corrected)
        return round(float((model.predict(embeddings[test]) == labels[test]).mean()), 4)

    everything = np.arange(len(train))
    return [
        {"relabelled": "none", "images": 0, "flips_fixed": 0, "test_accuracy": accuracy(np.array([], int))},
        {
            "relabelled": "the audit's flagged",
            "images": len(flagged),
            "flips_fixed": int(np.isin(flagged, planted).sum()),
            "test_accuracy": accuracy(flagged),
        },
        {
            "relabelled": "random",
            "images": len(random),
            "flips_fixed": int(np.isin(random, planted).sum()),
            "test_accuracy": accuracy(random),
        },
        {
            "relabelled": "all (clean labels)",
            "images": len(train),
            "flips_fixed": len(planted),
            "test_accuracy": accuracy(everything),
        },
    ]


def jpeg(image: Image.Image, quality: int = 75) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def crop(image: Image.Image, rng: np.random.Generator, share: float = 0.05) -> Image.Image:
    width, height = image.size
    cut_x, cut_y = max(1, round(width * share)), max(1, round(height * share))
    left, top = int(rng.integers(0, cut_x + 1)), int(rng.integers(0, cut_y + 1))
    return image.crop((left, top, width - cut_x + left, height - cut_y + top))


def duplicate_rows(images: list[Image.Image], rng: np.random.Generator, device: torch.device) -> tuple[list, list]:
    """1,000 distinct train images; 100 of them resized, 100 recompressed, 100 cropped into test."""
    distinct = images[:1000]
    copies = {
        "resized": lambda im: im.resize((im.width * 3, im.height * 3), Image.Resampling.BICUBIC),
        "JPEG q75": jpeg,
        "cropped 5%": lambda im: crop(im, rng),
    }
    planted, originals = [], []
    for name, make in copies.items():
        for i in rng.choice(len(distinct), 100, replace=False):
            planted.append((name, make(distinct[i])))
            originals.append(int(i))
    pixels = np.stack([prepared(im) for im in distinct] + [prepared(im) for _, im in planted])
    splits = ["train"] * len(distinct) + ["test"] * len(planted)
    rows = pd.DataFrame({"path": [f"img{i}.png" for i in range(len(pixels))], "split": splits, "label": "x"})
    ref = DatasetRef(prepared_dir="", class_names=["x"], image_size=SIZE, counts={}, task="detection")
    found = audit.audit_images(pixels, rows, ref, AuditParams(), 0, device)
    index = {f"img{i}.png": i for i in range(len(pixels))}
    pairs = {(index[p.first.path], index[p.second.path]) for p in found.pairs}
    table = []
    for name in copies:
        members = [
            (original, len(distinct) + k)
            for k, (original, (kind, _)) in enumerate(zip(originals, planted, strict=True))
            if kind == name
        ]
        hits = sum(pair in pairs for pair in members)
        table.append({"copies": name, "planted": len(members), "found": hits, "recall": round(hits / len(members), 3)})
    false = sorted([a, b] for a, b in pairs if b < len(distinct))
    table.append({"copies": "pairs among the 1,000 distinct", "planted": 0, "found": len(false), "recall": None})
    return table, false


def elpv_cost(device: torch.device, seed: int) -> dict:
    from elpv_dataset.utils import load_dataset

    images, probabilities, _ = load_dataset()
    pixels = np.stack([prepared(Image.fromarray(image)) for image in images])
    labels = np.where(probabilities >= 0.5, "defective", "functional")
    rng = np.random.default_rng(seed)
    splits = rng.choice(["train", "val", "test"], len(pixels), p=[0.7, 0.15, 0.15])
    rows = pd.DataFrame({"path": [f"cell{i:04d}.png" for i in range(len(pixels))], "split": splits, "label": labels})
    ref = DatasetRef(prepared_dir="", class_names=["defective", "functional"], image_size=SIZE, counts={})
    started = time.perf_counter()
    found = audit.audit_images(pixels, rows, ref, AuditParams(), seed, device)
    return {
        "images": len(pixels),
        "seconds": round(time.perf_counter() - started, 1),
        "parts": found.seconds,
        "summary": found.summary(),
    }


def markdown(rows: list[dict]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("—" if row[k] is None else str(row[k]) for k in header) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=500, help="Fashion-MNIST images per class (default 500)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    device = torch.device("cpu")
    rng = np.random.default_rng(args.seed)
    images, labels = fashion(args.per_class)
    started = time.perf_counter()
    embeddings = audit.embed(np.stack([prepared(im) for im in images]), device)
    embed_seconds = time.perf_counter() - started
    labels_table = label_rows(embeddings, labels, args.seed, rng)
    relabel_table = relabel_rows(embeddings, labels, args.seed, rng)
    duplicates_table, false_pairs = duplicate_rows(images, rng, device)
    cost = elpv_cost(device, args.seed)
    result = {
        "machine": f"{platform.node()}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "torch_threads": torch.get_num_threads(),
        "images": len(images),
        "embedding_seconds": round(embed_seconds, 1),
        "label_errors": labels_table,
        "relabelling": relabel_table,
        "near_duplicates": duplicates_table,
        "false_pairs": false_pairs,
        "elpv_cost": cost,
    }
    out = REPO / "bench" / "results" / "audit.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nFashion-MNIST, {len(images)} images; embeddings {embed_seconds:.0f} s\n")
    print(markdown(labels_table), "\n")
    print(markdown(relabel_table), "\n")
    print(markdown(duplicates_table), "\n")
    print(f"ELPV ({cost['images']} images): the audit took {cost['seconds']} s ({cost['parts']}); {cost['summary']}")
    print(f"\nwrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
