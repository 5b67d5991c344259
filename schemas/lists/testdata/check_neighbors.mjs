// check_neighbors.mjs reads stirpipe neighbour-list Parquet files with DuckDB, a reader
// independent of the Go code that wrote them, and prints what it sees as JSON so that a Go
// test can compare it with what was written. It uses the pinned @duckdb/node-api installed
// by `npm ci` in ../../embeddings/testdata/duckdb, through duck.mjs there.
//
// Usage: node check_neighbors.mjs FILE.parquet...
//
// For each file it prints {file, rows, columns, kv, records, pairs, lengths}: the row count,
// the column types as DuckDB sees them, the key-value metadata (without ARROW:schema), every
// row in file order (BIGINT values as strings, FLOAT values exact), the (query, neighbour,
// distance) rows that unnest() makes of the list columns, and per query len() of its
// neighbour list, its n_relevant and the number of neighbours with its label (hits), which
// n_relevant must bound.
import { connect, describe, quote } from '../../embeddings/testdata/duckdb/duck.mjs';

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node check_neighbors.mjs FILE.parquet...');
  process.exit(2);
}

const { all, close } = await connect();

const out = [];
for (const file of files) {
  const src = `read_parquet(${quote(file)})`;
  const res = await describe(all, file);
  res.records = await all(`SELECT * FROM ${src}`);
  // unnest() of several lists in one SELECT zips them; a query with an empty list gives no row.
  res.pairs = await all(
    `SELECT query_id, unnest(neighbor_ids) AS neighbor_id, unnest(neighbor_labels) AS label,
            unnest(distances) AS distance
     FROM ${src} ORDER BY query_id, distance, neighbor_id`,
  );
  res.lengths = await all(
    `SELECT query_id, len(neighbor_ids) AS n, n_relevant,
            len(list_filter(neighbor_labels, l -> l = query_label)) AS hits
     FROM ${src} ORDER BY query_id`,
  );
  out.push(res);
}
close();
console.log(JSON.stringify(out));
