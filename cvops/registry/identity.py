"""Who acts on the registry. With a team stack it is the MLflow user the tracking server authenticated, and
the server says what that user may do; with the local store there is no server to ask, and a reviewer is the
name typed on the command line (the local default keeps that).

The credentials are MLflow's own: MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, which override those
stored in ~/.mlflow/credentials. Acting as another user is setting those two variables.
"""

import urllib.parse
from dataclasses import dataclass, field

from cvops.errors import PromotionRefusedError
from cvops.stack.web import http_json

MANAGE = "MANAGE"


@dataclass(frozen=True)
class Identity:
    """A user the MLflow server authenticated, and where to ask it about their rights."""

    user: str
    is_admin: bool
    server: str
    password: str = field(repr=False)  # never printed

    def permission(self, model_name: str) -> str:
        """The user's permission on the registered model, as the server resolves it (READ, EDIT, MANAGE...)."""
        if self.is_admin:
            return MANAGE
        query = urllib.parse.urlencode(
            {"username": self.user, "resource_type": "registered_model", "resource_id": model_name}
        )
        status, answer = http_json(
            "GET", f"{self.server}/api/3.0/mlflow/users/permissions/get?{query}", auth=(self.user, self.password)
        )
        if status != 200:
            raise PromotionRefusedError(
                f"the MLflow server did not say what '{self.user}' may do on {model_name} "
                f"({status}: {answer.get('message', '')})"
            )
        return str(answer.get("permission", "NO_PERMISSIONS"))


def current_identity(tracking_uri: str) -> Identity | None:
    """The authenticated user of a tracking server with MLflow's basic-auth app; None for a local store or a
    server without authentication."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    from mlflow.utils.credentials import read_mlflow_creds

    creds = read_mlflow_creds()
    server = tracking_uri.rstrip("/")
    auth = (creds.username, creds.password or "") if creds.username else None
    try:
        status, answer = http_json("GET", f"{server}/api/2.0/mlflow/users/current", auth=auth)
    except OSError as err:
        raise PromotionRefusedError(f"the MLflow server {server} does not answer ({err}): try again") from err
    if status == 404:
        return None  # no authentication on this server: anyone may type any name
    if status == 401:
        who = f"user '{creds.username}'" if creds.username else "no user"
        raise PromotionRefusedError(
            f"the MLflow server {server} refused {who}: set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD to your MLflow account (.team/users.env)"
        )
    if status != 200:
        raise PromotionRefusedError(f"the MLflow server {server} answered {status} when asked who you are")
    user = answer["user"]
    return Identity(
        user=user["username"], is_admin=bool(user.get("is_admin")), server=server, password=creds.password or ""
    )
