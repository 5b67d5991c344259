// check_neighbors.mjs reads stirpipe neighbour-list Parquet files with DuckDB, a reader
// independent of the Go code that wrote them, and prints what it sees as JSON so that a Go
// test can compare it with what was written. It uses the pinned @duckdb/node-api installed
// by `npm ci` in ../../embeddings/testdata/duckdb.
//
// Usage: node check_neighbors.mjs FILE.parquet...
//
// For each file it prints {file, rows, columns, kv, records, pairs, lengths}: the row count,
// the column types as DuckDB sees them, the key-value metadata (without ARROW:schema), every
// row in file order (BIGINT values as strings, FLOAT values exact), the (query, neighbour,
// distance) rows that unnest() makes of the list columns, and len() of each neighbour list.
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../embeddings/testdata/duckdb/package.json', import.meta.url));
const { DuckDBInstance } = require('@duckdb/node-api');

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node check_neighbors.mjs FILE.parquet...');
  process.exit(2);
}

const quote = (s) => `'${s.replaceAll("'", "''")}'`;

const instance = await DuckDBInstance.create(':memory:');
const conn = await instance.connect();
const all = (sql) => conn.runAndReadAll(sql).then((r) => r.getRowObjectsJson());

const out = [];
for (const file of files) {
  const src = `read_parquet(${quote(file)})`;
  const kv = {};
  for (const { key, value } of await all(
    `SELECT decode(key) AS key, decode(value) AS value FROM parquet_kv_metadata(${quote(file)})`,
  )) {
    if (key !== 'ARROW:schema') kv[key] = value;
  }
  const columns = {};
  for (const c of await all(`DESCRIBE SELECT * FROM ${src}`)) {
    columns[c.column_name] = c.column_type;
  }
  const [{ n }] = await all(`SELECT count(*) AS n FROM ${src}`);
  const records = await all(`SELECT * FROM ${src}`);
  // unnest() of several lists in one SELECT zips them; a query with an empty list gives no row.
  const pairs = await all(
    `SELECT query_id, unnest(neighbor_ids) AS neighbor_id, unnest(neighbor_labels) AS label,
            unnest(distances) AS distance
     FROM ${src} ORDER BY query_id, distance, neighbor_id`,
  );
  const lengths = await all(`SELECT query_id, len(neighbor_ids) AS n FROM ${src} ORDER BY query_id`);
  out.push({ file, rows: Number(n), columns, kv, records, pairs, lengths });
}
conn.closeSync();
console.log(JSON.stringify(out));
