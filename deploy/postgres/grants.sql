-- splinter's PostgreSQL roles: run once per database, as a superuser (or a role with CREATEROLE that
-- owns the database), before or after the first `splinter db migrate`:
--
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -f deploy/postgres/grants.sql
--
-- Three login roles (they authenticate as pg_hba.conf says: give each a password or a certificate):
--   splinter_owner   owns schema cluster: runs `splinter db migrate` (the Kubernetes Job) and nothing else
--   splinter_app     reads and writes rows, no DDL: `splinter serve`, the activator, push, activate,
--                    rollback, revoke, token and kek commands
--   splinter_reader  reads rows only: `splinter realm show`, `patch list`, `patch history`, `db status`
-- Other names: psql -v owner=... -v app=... -v reader=...  Passwords, afterwards:
--   ALTER ROLE splinter_app PASSWORD '...';   (or \password splinter_app in psql)
-- Safe to run again: every statement creates what is missing or grants what is granted already.

\if :{?owner}
\else
  \set owner splinter_owner
\endif
\if :{?app}
\else
  \set app splinter_app
\endif
\if :{?reader}
\else
  \set reader splinter_reader
\endif

SELECT format('CREATE ROLE %I LOGIN', role)
  FROM unnest(ARRAY[:'owner', :'app', :'reader']) AS role
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role)
\gexec

-- Only the owner changes the schema; nobody else may create objects in it or in public.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SELECT format('GRANT CONNECT ON DATABASE %I TO %I, %I, %I', current_database(), :'owner', :'app', :'reader')
\gexec

-- The schema the migrations fill, made for the owner (who then needs no CREATE on the database).
CREATE SCHEMA IF NOT EXISTS cluster AUTHORIZATION :"owner";
ALTER SCHEMA cluster OWNER TO :"owner";
REVOKE ALL ON SCHEMA cluster FROM PUBLIC;
GRANT USAGE ON SCHEMA cluster TO :"app", :"reader";

-- A schema migrated before this file ran, by another role: its tables and functions pass to the
-- owner, who must own them to migrate them further (a table's serial sequences follow it).
SELECT format('ALTER TABLE cluster.%I OWNER TO %I', c.relname, :'owner')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'cluster' AND c.relkind IN ('r', 'p') AND pg_get_userbyid(c.relowner) <> :'owner'
\gexec
SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, :'owner')
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'cluster' AND pg_get_userbyid(p.proowner) <> :'owner'
\gexec

-- Tables and sequences already there (a schema migrated before this file ran) ...
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA cluster TO :"app";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA cluster TO :"app";
-- The reader sees every table, patch_keys and api_tokens included: keys are stored only wrapped by
-- the KEK and tokens only as SHA-256 hashes of random secrets, so neither unlocks anything.
GRANT SELECT ON ALL TABLES IN SCHEMA cluster TO :"reader";
-- ... and those every later migration creates, when the owner runs it.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA cluster
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA cluster
  GRANT USAGE, SELECT ON SEQUENCES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA cluster
  GRANT SELECT ON TABLES TO :"reader";
-- Functions (the release log's triggers) keep PostgreSQL's default: EXECUTE for PUBLIC.
