// node-postgres logs in with SCRAM-SHA-256 over TLS, verifying the server's
// certificate chain and host name, against a running slicedb:
//   node secure_login.js HOST PORT CA_FILE PASSWORD
// (NODE_PATH pointing at a node_modules that holds `pg`).
const fs = require('fs');
const { Client } = require('pg');

function check(ok, what) {
  if (!ok) throw new Error(what);
}

async function main() {
  const [host, port, ca, password] = process.argv.slice(2);
  const options = (pw) => ({
    host, port: Number(port), user: 'postgres', database: 'slicedb', password: pw,
    ssl: { ca: fs.readFileSync(ca), rejectUnauthorized: true },
  });
  const client = new Client(options(password));
  await client.connect();
  try {
    check(client.connection.stream.encrypted === true, 'TLS in use');
    const r = await client.query('SELECT 40 + 2 AS n');
    check(r.rows[0].n === 42, `query ${JSON.stringify(r.rows)}`);
  } finally {
    await client.end();
  }
  const wrong = new Client(options('wrong'));
  try {
    await wrong.connect();
    throw new Error('a wrong password was accepted');
  } catch (e) {
    check(e.code === '28P01', `wrong password: ${e.code} ${e.message}`);
  }
  console.log('node-postgres: ok');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
