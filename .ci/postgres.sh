#!/usr/bin/env bash
# Start Debian's PostgreSQL for the Prefect deployment test (a production-like Prefect server
# backend) and print the connection URL. Installs the package when the machine lacks it.
# Also creates udn_history_test (same role, same server) for the run-history tests, and
# prefect_fleet_test: the fleet test's Prefect server has a database of its own, so it and the
# deployment test can run at the same time on two pytest-xdist workers.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | grep -q "^${version} main"; then
  pg_createcluster "$version" main >/dev/null
fi
pg_ctlcluster "$version" main start >/dev/null 2>&1 || true
for _ in $(seq 1 30); do
  su postgres -c "psql -tAc 'select 1'" >/dev/null 2>&1 && break
  sleep 1
done
su postgres -c "psql -tAc \"select 1 from pg_roles where rolname='prefect'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"create role prefect login password 'prefect'\""
su postgres -c "psql -tAc \"select 1 from pg_database where datname='prefect_test'\"" | grep -q 1 \
  || su postgres -c "psql -qc 'create database prefect_test owner prefect'"
for db in udn_history_test prefect_fleet_test; do
  su postgres -c "psql -tAc \"select 1 from pg_database where datname='$db'\"" | grep -q 1 \
    || su postgres -c "psql -qc 'create database $db owner prefect'"
done
port=$(pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $3}')
echo "postgresql+asyncpg://prefect:prefect@127.0.0.1:${port}/prefect_test"
