-- Runs once, when the postgresql service initialises an empty data volume
-- (/docker-entrypoint-initdb.d), as the POSTGRES_USER superuser.
--
-- Temporal's auto-setup creates its own databases (temporal, temporal_visibility). This adds the
-- session log store of the managed-agents workers (transcripts, tool results, agent definitions);
-- the workers create its tables themselves on start.
--
-- On a data volume that already exists this file is NOT run again: create the database by hand:
--   docker compose exec postgresql psql -U temporal -d postgres -c 'CREATE DATABASE managed_agents'
CREATE DATABASE managed_agents;
