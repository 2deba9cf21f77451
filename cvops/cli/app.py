"""The root of the `cvops` command line: the group, one-line errors, and what every command starts from.

Each command parses its options, calls one function of cvops, and renders what it returns
(cvops/cli/render.py). The group turns every error a user can cause into one line on stderr and an exit
code (docs: reference/exit-codes.md): a CvopsError raised anywhere, even inside a pipeline step, and a command line that
click cannot parse.
"""

import atexit
import gc
import logging
import os
import re
import signal
import sys
import tempfile
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

import click

from cvops.config import Params, Project
from cvops.errors import INTERRUPTED_EXIT, ConfigError, CvopsError, DataError, ServiceUnavailable

if TYPE_CHECKING:
    from cvops.registry.model_registry import ModelRegistry

log = logging.getLogger("cvops")
USAGE_EXIT = ConfigError.exit_code  # a command line click cannot parse: like a bad parameter
JSON_HELP = "One JSON document instead of the table (its JSON Schema: cvops/cli/schemas/)."
OVERRIDE_HELP = (
    "A parameter for this run only, e.g. -S train.epochs=3 (repeatable; `cvops params set` changes params.yaml)."
)


class Since(click.ParamType):
    """An ISO time (UTC unless it says otherwise) or an age: 90m, 6h, 2d."""

    name = "since"
    UNITS: ClassVar[dict[str, str]] = {"m": "minutes", "h": "hours", "d": "days"}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        if value[-1:] in self.UNITS and value[:-1].replace(".", "", 1).isdigit():
            return datetime.now(UTC) - timedelta(**{self.UNITS[value[-1]]: float(value[:-1])})
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r}: give an ISO time (2026-11-22T08:00) or an age (90m, 6h, 2d)", param, ctx)
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def fail(message: str, code: int) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def _chain(err: BaseException) -> list[BaseException]:
    """`err` and the errors behind it; a chain can loop (an error raised while handling itself)."""
    found: list[BaseException] = []
    cause: BaseException | None = err
    while cause is not None and all(cause is not seen for seen in found):
        found.append(cause)
        cause = cause.__cause__ or cause.__context__
    return found


def user_error(err: BaseException) -> CvopsError | None:
    """The CvopsError behind `err` (itself, or the one a failed pipeline step raised underneath), or a server
    that did not answer, as one line a user can act on."""
    chain = _chain(err)
    for cause in chain:
        if isinstance(cause, CvopsError):
            return cause
    refused = next(
        (m for c in chain if (m := re.search(r"host='([^']+)', port=(\d+)\).*(Max retries|refused)", str(c)))), None
    )
    if refused:
        return ServiceUnavailable(
            f"the server at {refused[1]}:{refused[2]} does not answer (MLflow, ZenML or S3): "
            "start it again (`cvops team up` restarts a stopped team stack), then run the "
            "command again"
        )
    return None


class Cvops(click.Group):
    """The root group: every user error, from click or from cvops, is one line and its exit code."""

    def main(self, *args: Any, **kwargs: Any) -> NoReturn:
        kwargs["standalone_mode"] = False  # click's own handling prints multi-line usage text
        kwargs.setdefault("prog_name", "cvops")  # also when started as `python -m cvops.cli`
        # Registered first, so it runs after every library's exit handler: the interpreter's last garbage
        # collections walk the millions of objects torch, ZenML and MLflow leave, for seconds (4 s after a
        # training); freezing them ends the process as soon as its work is done.
        atexit.register(gc.freeze)
        try:
            result = super().main(*args, **kwargs)
        except click.UsageError as err:
            where = err.ctx.command_path if err.ctx else "cvops"
            said = " ".join(err.format_message().split()).rstrip(".")  # click lists a choice's values a line each
            fail(f"{said} (see `{where} --help`)", USAGE_EXIT)
        except click.ClickException as err:
            fail(err.format_message(), err.exit_code)
        except click.Abort:
            fail("interrupted", INTERRUPTED_EXIT)
        except Exception as err:
            cause = user_error(err)
            if cause is None:
                unforeseen(err)
            fail(str(cause), cause.exit_code)
        sys.exit(result if isinstance(result, int) else 0)


def unforeseen(err: BaseException) -> NoReturn:
    """An error cvops did not foresee: one line naming it and a file holding its traceback (the project's
    reports/errors/, else the temporary folder's cvops-errors/), never a traceback on the terminal."""
    try:
        folder = Project.find().reports_dir / "errors"
    except CvopsError:  # outside a project
        folder = Path(tempfile.gettempdir()) / "cvops-errors"
    path = folder / f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{os.getpid()}.log"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(f"cvops {' '.join(sys.argv[1:])}\n{''.join(traceback.format_exception(err))}", "utf-8")
        where = f"its traceback is in {path}"
    except OSError:
        where = "its traceback could not be written"
    first = str(err).strip().splitlines()[0][:300] if str(err).strip() else "(no message)"
    fail(
        f"unexpected {type(err).__name__}: {first} ({where}; run again with -v to see more, and report it to "
        "cvops's issue tracker if it is not a server or a file of yours)",
        CvopsError.exit_code,
    )


class InputFile(click.Path):
    """A file the command reads: a missing one is missing input data (exit 3) in every command."""

    def __init__(self) -> None:
        super().__init__(path_type=Path, dir_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not Path(value).is_file():
            raise DataError(f"{value}: {'a folder, not a file' if Path(value).is_dir() else 'no such file'}")
        return super().convert(value, param, ctx)


def _terminate(signum: int, _: object) -> NoReturn:
    """SIGTERM ends a command as Ctrl-C would, through its cleanup (temporary files, params.yaml overlays)."""
    raise SystemExit(128 + signum)


@click.group(cls=Cvops, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True, help="Show debug logs.")
@click.version_option(package_name="cvops", prog_name="cvops", message="%(prog)s %(version)s")
def main(verbose: bool) -> None:
    """cvops: an offline-first MLOps pipeline for image classifiers and object detectors.

    \b
    Quick start:
      cvops new my-project && cd my-project   # a project of your own
      cvops init                    # local ZenML stack, MLflow store, DVC
      cvops data import elpv        # or: digits | fashion-mnist | folder --path DIR
      cvops run training            # train, evaluate, register
      cvops ui                      # compare runs in the MLflow UI
      cvops serve                   # serve the champion (after `cvops models promote`)
      cvops run monitoring          # drift check of served traffic; retrains on drift
      cvops schedule                # monitoring and retraining on a schedule
      cvops labels queue            # captured production images to label; then `cvops labels import`
    """
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)  # only cvops's own logger: ZenML and MLflow configure theirs
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    signal.signal(signal.SIGTERM, _terminate)


def project() -> Project:
    """The checkout the command runs in, with this process's environment set up for it."""
    from cvops.stack.checkout import configure_environment

    found = Project.find()
    configure_environment(found)
    return found


def initialized_project() -> Project:
    """The checkout, refusing with what to do when `cvops init` has not run there."""
    from cvops.stack.checkout import ensure_initialized

    found = project()
    ensure_initialized(found)
    return found


def registry(checkout: Project, params: Params | None = None, model_name: str | None = None) -> "ModelRegistry":
    """The checkout's registered model (or `model_name`), on its MLflow store."""
    from cvops.registry.model_registry import ModelRegistry
    from cvops.registry.tracking import use_project_store

    params = params or checkout.params()
    use_project_store(checkout, params.mlflow.experiment)
    name = model_name or params.registry.model_name
    return ModelRegistry.of(checkout, name, params.registry.allow_self_approval)
