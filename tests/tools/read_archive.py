"""Reads a Stator archive with the tools users have: DuckDB, pandas (pyarrow) and Polars.

Usage: read_archive.py ARCHIVE_DIR. Prints JSON: for each tool and table, the row count, and
for `readings` the per-site count and sum of `value`.
"""
import json
import os
import sys

import duckdb
import polars as pl
import pyarrow.dataset as ds

root = sys.argv[1]
tables = [t for t in ("readings", "waveforms", "features", "alerts") if os.path.isdir(os.path.join(root, t))]
out = {"duckdb": {}, "pandas": {}, "polars": {}}
for table in tables:
    glob = f"{root}/{table}/**/*.parquet"
    out["duckdb"][table] = duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning=true)").fetchall()[0][0]
    out["pandas"][table] = len(ds.dataset(f"{root}/{table}", format="parquet", partitioning="hive").to_table().to_pandas())
    out["polars"][table] = pl.scan_parquet(glob, hive_partitioning=True).collect().height
if "readings" in tables:
    glob = f"{root}/readings/**/*.parquet"
    rows = duckdb.sql(
        f"SELECT site, count(*), sum(value) FROM read_parquet('{glob}', hive_partitioning=true) GROUP BY site ORDER BY site"
    ).fetchall()
    out["duckdb"]["by_site"] = [[s, n, round(v, 6)] for s, n, v in rows]
    df = ds.dataset(f"{root}/readings", format="parquet", partitioning="hive").to_table().to_pandas()
    g = df.groupby("site")["value"].agg(["count", "sum"]).sort_index()
    out["pandas"]["by_site"] = [[s, int(r["count"]), round(float(r["sum"]), 6)] for s, r in g.iterrows()]
    p = pl.scan_parquet(glob, hive_partitioning=True).group_by("site").agg(pl.len(), pl.col("value").sum()).sort("site")
    out["polars"]["by_site"] = [[s, n, round(v, 6)] for s, n, v in p.collect().rows()]
print(json.dumps(out))
