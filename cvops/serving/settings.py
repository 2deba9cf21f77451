"""What the service reads from its checkout and its environment, once, when it is first needed: not when its
module is imported.

Set by `cvops serve` (or in a bento):
  CVOPS_ROOT        the checkout (params.yaml: serve.*, the MLflow store, the inference log)
  CVOPS_SERVE_MODEL alias (champion) or version number; an alias is polled, and a new version is
                    swapped in atomically (requests in flight finish on the model they started with)
  CVOPS_BENTO_MODEL instead of the registry: a packaged model in BentoML's store (what a bento serves)
  CVOPS_API_TOKEN   when set, every request but the probes and /metrics needs `Authorization: Bearer <token>`
  CVOPS_SERVE_OVERRIDES  `cvops serve`'s options (--workers, --canary, --shadow) as params overrides, a JSON list
"""

import functools
import json
import os
import typing as t
from dataclasses import dataclass

from cvops.config import Params, Project, ServeParams
from cvops.env import API_TOKEN_ENV, BENTO_MODEL_ENV, SERVE_MODEL_ENV, SERVE_OVERRIDES_ENV
from cvops.errors import ConfigError
from cvops.registry.aliases import CHAMPION


@dataclass(frozen=True)
class ServiceSettings:
    """The checkout and params the service runs with, and what its environment names."""

    project: Project
    params: Params  # params.yaml with `cvops serve`'s overrides
    selector: str  # the champion's alias or version number
    packaged: str | None  # a bento's model in BentoML's store, served instead of the registry's
    api_token: str | None

    @property
    def serve(self) -> ServeParams:
        return self.params.serve


@functools.cache
def service_settings() -> ServiceSettings:
    """The service's settings, read on first use and kept for the life of the process."""
    project = Project.find()
    return ServiceSettings(
        project=project,
        params=project.params(json.loads(os.environ.get(SERVE_OVERRIDES_ENV) or "[]")),
        selector=os.environ.get(SERVE_MODEL_ENV) or CHAMPION,
        packaged=os.environ.get(BENTO_MODEL_ENV) or None,
        api_token=os.environ.get(API_TOKEN_ENV) or None,
    )


def service_options() -> dict[str, t.Any]:
    """The arguments of @bentoml.service, which BentoML takes when a service class is defined: from the
    checkout's params, or from their defaults where the module is imported outside a checkout (the service
    then refuses to start, saying why)."""
    try:
        Project.find()
    except ConfigError:
        params = Params()
    else:
        params = service_settings().params
    return {
        "name": params.registry.bento_name,
        "workers": params.serve.worker_count,
        "traffic": {"timeout": 60},
        "logging": {"access": {"enabled": params.serve.access_log}},
    }
