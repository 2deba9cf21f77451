-- The MLflow server's user store and cvops's shared state, beside MLflow's own database (POSTGRES_DB)
CREATE DATABASE cvops_auth OWNER cvops;
CREATE DATABASE cvops_state OWNER cvops;
