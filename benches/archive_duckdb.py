"""The DuckDB side of the archive bench's race: the same SQL over the same Stator-written archive.

Reads JSON on standard input: {"root": ARCHIVE_DIR, "threads": N, "rounds": R, "queries": [SQL, ...]}.
Every table of the archive is a view over its Hive-partitioned Parquet files (partition values
as text, as `stator query` reads them). Prints JSON: for each query, its best time in seconds
over R rounds (the view lists the files anew each time, as DataFusion's listing table does) and
its rows, sorted, for the bench to compare with DataFusion's answer.
"""
import json
import os
import sys
import time

import duckdb

job = json.load(sys.stdin)
con = duckdb.connect()
con.execute(f"SET threads = {int(job['threads'])}")
for table in ("readings", "waveforms", "features", "alerts"):
    if os.path.isdir(os.path.join(job["root"], table)):
        glob = f"{job['root']}/{table}/**/*.parquet"
        con.execute(
            f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true, "
            "hive_types = {'site': VARCHAR, 'date': VARCHAR, 'hour': VARCHAR})"
        )
out = []
for sql in job["queries"]:
    best, rows = float("inf"), None
    for _ in range(int(job["rounds"])):
        start = time.perf_counter()
        rows = con.execute(sql).fetchall()
        best = min(best, time.perf_counter() - start)
    out.append({"seconds": best, "rows": sorted([list(r) for r in rows], key=repr)})
print(json.dumps(out))
