// duck.mjs is what the DuckDB check scripts of the schemas tests share: an in-memory DuckDB
// connection and what every Parquet file is asked first (its key-value metadata, column
// types and row count). Scripts outside this directory import it by relative URL, so that
// @duckdb/node-api is found in this directory's node_modules.
import { DuckDBInstance } from '@duckdb/node-api';

// quote returns s as an SQL string literal.
export const quote = (s) => `'${s.replaceAll("'", "''")}'`;

// connect opens an in-memory database; all(sql) returns the result rows as JSON objects
// (BIGINT as strings), close() ends the connection.
export async function connect() {
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  const all = (sql) => conn.runAndReadAll(sql).then((r) => r.getRowObjectsJson());
  return { all, close: () => conn.closeSync() };
}

// describe returns {file, rows, columns, kv} of a Parquet file: its row count, its column
// types as DuckDB sees them and its key-value metadata without ARROW:schema.
export async function describe(all, file) {
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
  return { file, rows: Number(n), columns, kv };
}
