"""psycopg 3 and asyncpg log in with SCRAM-SHA-256 over TLS, verifying the
server's certificate (sslmode=verify-full), against a running slicedb.

Usage: python3 secure_login.py HOST PORT CA_FILE PASSWORD
HOST must be a name the server's certificate names. Exits non-zero with a
message on the first failure.
"""
import asyncio
import ssl
import sys

import asyncpg
import psycopg


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def psycopg3(host, port, ca, password):
    dsn = f"host={host} port={port} user=postgres dbname=slicedb sslmode=verify-full sslrootcert={ca}"
    with psycopg.connect(dsn, password=password) as conn:
        check(conn.pgconn.ssl_in_use, "psycopg: TLS in use")
        check(conn.execute("SELECT 40 + 2").fetchone()[0] == 42, "psycopg: query")
    try:
        psycopg.connect(dsn, password="wrong").close()
        raise AssertionError("psycopg: a wrong password was accepted")
    except psycopg.OperationalError as e:
        # libpq reports a failed login as a connection failure, with the server's message.
        check('password authentication failed for user "postgres"' in str(e), f"psycopg: {e}")
    print("psycopg: ok")


async def asyncpg_check(host, port, ca, password):
    context = ssl.create_default_context(cafile=ca)  # checks the chain and the host name
    conn = await asyncpg.connect(host=host, port=port, user="postgres", password=password,
                                 database="slicedb", ssl=context)
    try:
        check(conn._transport.get_extra_info("ssl_object") is not None, "asyncpg: TLS in use")
        check(await conn.fetchval("SELECT 40 + 2") == 42, "asyncpg: query")
    finally:
        await conn.close()
    try:
        await asyncpg.connect(host=host, port=port, user="postgres", password="wrong",
                              database="slicedb", ssl=context)
        raise AssertionError("asyncpg: a wrong password was accepted")
    except asyncpg.exceptions.InvalidPasswordError:
        pass
    print("asyncpg: ok")


if __name__ == "__main__":
    host, port, ca, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    psycopg3(host, port, ca, password)
    asyncio.run(asyncpg_check(host, port, ca, password))
