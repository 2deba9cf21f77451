#!/bin/sh
# MLflow reads its user store's URL only from the auth config file: write it from the environment.
set -eu
cat > /tmp/auth.ini <<INI
[mlflow]
default_permission = READ
database_uri = ${MLFLOW_AUTH_DATABASE_URI}
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
# a password is checked with a slow hash; without this cache every request pays for it
auth_cache_ttl_seconds = 60
INI
export MLFLOW_AUTH_CONFIG_PATH=/tmp/auth.ini
exec "$@"
