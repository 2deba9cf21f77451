"""What a user sees while cvops works: progress bars on long loops, and libraries kept from narrating.

Progress bars show on a terminal only: in tests, CI, logs and pipes they stay silent (or set TQDM_DISABLE=1).
"""

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(
    items: Iterable[T] | None, desc: str, unit: str = "img", total: int | None = None, **options: object
) -> tqdm:
    """A progress bar over `items` (or updated by hand, with `total`) on a terminal; silent anywhere else."""
    return tqdm(items, desc=desc, unit=unit, total=total, disable=None, **options)


@contextmanager
def quiet(*loggers: str, level: int = logging.WARNING) -> Iterator[None]:
    """Raise the named loggers to `level` for the block: for libraries that narrate at INFO (or warn about a
    choice cvops made on purpose) what a user need not read."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, before in saved.items():
            logging.getLogger(name).setLevel(before)
