"""Airflow DAG file: shard 1 of the community DAGs (see ``caselle_sync.SHARDS``)."""

from caselle_sync import build_shard

build_shard(globals(), 1)
