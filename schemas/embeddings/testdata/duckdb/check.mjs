// check.mjs reads stirpipe Parquet files (embeddings shards or rejects files) with DuckDB,
// a reader independent of the Go code that wrote them, and prints what it sees as JSON so a
// Go test can compare it with what was written.
//
// Usage: node check.mjs [--sums] FILE.parquet...
//
// For each file it prints {file, rows, columns, kv, ...}: the row count, the column types
// as DuckDB sees them, the key-value metadata (parquet_kv_metadata, without ARROW:schema),
// and for an embeddings shard the item ids in file order plus either the full vectors
// (default) or, with --sums, each vector's sum taken in float64 in element order. Every
// other column is printed as row objects (BIGINT as strings), except in --sums mode.
// Floats are printed exactly: a float32 is exact as a JS number, and −0 keeps its sign.
import { connect, describe, quote } from './duck.mjs';

const args = process.argv.slice(2);
const sums = args.includes('--sums');
const files = args.filter((a) => a !== '--sums');
if (files.length === 0) {
  console.error('usage: node check.mjs [--sums] FILE.parquet...');
  process.exit(2);
}

const { all, close } = await connect();

const out = [];
for (const file of files) {
  const src = `read_parquet(${quote(file)})`;
  const res = await describe(all, file);
  const { columns, kv } = res;

  if ('embedding' in columns) {
    const dim = Number(kv['stir.model.dim']);
    if (!Number.isInteger(dim) || dim < 1) {
      throw new Error(`${file}: metadata stir.model.dim is ${kv['stir.model.dim']}, want a positive integer`);
    }
    // Parquet has no fixed-size list: DuckDB sees FLOAT[] and the cast checks every width.
    const rows = await all(`SELECT item_id, embedding::FLOAT[${dim}] AS e FROM ${src}`);
    res.ids = rows.map((r) => r.item_id);
    if (sums) {
      res.sums = rows.map((r) => r.e.reduce((s, v) => s + v, 0));
    } else {
      res.embeddings = rows.map((r) => r.e);
    }
  }
  if (!sums) {
    const select = 'embedding' in columns ? 'SELECT * EXCLUDE (embedding)' : 'SELECT *';
    res.records = await all(`${select} FROM ${src}`);
  }
  out.push(res);
}
close();
// JSON.stringify writes −0 as 0; keep the sign so that the comparison is bit-exact.
const negZero = '"\\u0000-0"'; // the sentinel as JSON.stringify escapes it
console.log(
  JSON.stringify(out, (_, v) => (Object.is(v, -0) ? '\u0000-0' : v)).replaceAll(negZero, '-0'),
);
