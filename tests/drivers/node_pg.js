// node-postgres against a running slicedb: node node_pg.js HOST PORT
// (with NODE_PATH pointing at a node_modules that holds `pg`).
const { Client } = require('pg');

function check(ok, what) {
  if (!ok) throw new Error(what);
}

async function main() {
  const [host, port] = process.argv.slice(2);
  const client = new Client({ host, port: Number(port), user: 'postgres', database: 'slicedb' });
  await client.connect();
  try {
    await client.query('CREATE TABLE node_t (id integer PRIMARY KEY, label text, ok boolean, at timestamptz)');
    for (let i = 0; i < 20; i++) {
      const r = await client.query('INSERT INTO node_t VALUES ($1, $2, $3, $4)', [i, `l${i}`, i % 3 === 0, new Date(Date.UTC(2024, 0, 1 + i))]);
      check(r.rowCount === 1, 'insert rowCount');
    }
    const one = await client.query({ name: 'by-id', text: 'SELECT label, ok, at FROM node_t WHERE id = $1', values: [9] });
    check(one.rows.length === 1 && one.rows[0].label === 'l9' && one.rows[0].ok === true, JSON.stringify(one.rows));
    check(one.rows[0].at.getTime() === Date.UTC(2024, 0, 10), `timestamptz ${one.rows[0].at}`);
    const again = await client.query({ name: 'by-id', text: 'SELECT label, ok, at FROM node_t WHERE id = $1', values: [3] });
    check(again.rows[0].label === 'l3', 'named prepared statement reused');
    const agg = await client.query('SELECT count(*) AS n FROM node_t WHERE ok');
    check(agg.rows[0].n === '7', `count ${agg.rows[0].n}`);
    try {
      await client.query('SELECT * FROM missing_table');
      throw new Error('missing table accepted');
    } catch (e) {
      check(e.code === '42P01', `code ${e.code}`);
    }
    const del = await client.query('DELETE FROM node_t WHERE id >= $1', [10]);
    check(del.rowCount === 10, `delete rowCount ${del.rowCount}`);
  } finally {
    await client.end();
  }
  console.log('node-postgres: ok');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
