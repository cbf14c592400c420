"""uuid and jsonb through psycopg 3 (text and binary results) and asyncpg
(binary parameters and results), against a running slicedb.

Usage: python3 text_types.py HOST PORT
Exits non-zero with a message on the first failure. Passes against
PostgreSQL 15 too.
"""
import asyncio
import json
import sys
import uuid

import asyncpg
import psycopg
from psycopg.types.json import Jsonb


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def psycopg3(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS tt_docs")
        conn.execute(
            "CREATE TABLE tt_docs (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), body jsonb NOT NULL, owner uuid)"
        )
        owner = uuid.uuid4()
        ids = [conn.execute("INSERT INTO tt_docs (body, owner) VALUES (%s, %s) RETURNING id",
                            (Jsonb({"n": n, "tags": ["a", f"t{n}"]}), owner)).fetchone()[0] for n in range(5)]
        check(all(isinstance(i, uuid.UUID) for i in ids) and len(set(ids)) == 5, f"generated ids {ids!r}")
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                cur.execute("SELECT id, body, owner FROM tt_docs WHERE id = %s", (ids[3],))
                row = cur.fetchone()
                check(row == (ids[3], {"n": 3, "tags": ["a", "t3"]}, owner), f"psycopg binary={binary} row {row!r}")
                cur.execute("SELECT count(*) FROM tt_docs WHERE owner = %s AND body @> %s", (owner, Jsonb({"tags": ["t2"]})))
                check(cur.fetchone()[0] == 1, "psycopg containment")
                cur.execute("SELECT body ->> 'n' FROM tt_docs WHERE body -> 'tags' ? 't4'")
                check(cur.fetchall() == [("4",)], "psycopg ->> and ?")
        try:
            conn.execute("INSERT INTO tt_docs (id, body) VALUES ('not-a-uuid', '{}')")
            raise AssertionError("bad uuid accepted")
        except psycopg.errors.InvalidTextRepresentation:
            pass
    return ids


async def asyncpg_checks(host, port, ids):
    conn = await asyncpg.connect(host=host, port=port, user="postgres", database=sys.argv[3] if len(sys.argv) > 3 else "slicedb")
    try:
        row = await conn.fetchrow("SELECT id, body FROM tt_docs WHERE id = $1", ids[1])
        check(row["id"] == ids[1] and json.loads(row["body"]) == {"n": 1, "tags": ["a", "t1"]}, f"asyncpg row {row!r}")
        new = uuid.uuid4()
        await conn.execute("INSERT INTO tt_docs (id, body) VALUES ($1, $2)", new, json.dumps({"k": [1, 2]}))
        body = await conn.fetchval("SELECT body FROM tt_docs WHERE id = $1", new)
        check(body == '{"k": [1, 2]}', f"asyncpg jsonb {body!r}")
    finally:
        await conn.close()


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    db = sys.argv[3] if len(sys.argv) > 3 else "slicedb"
    ids = psycopg3(f"host={host} port={port} user=postgres dbname={db}")
    print("psycopg 3 uuid/jsonb: ok")
    asyncio.run(asyncpg_checks(host, port, ids))
    print("uuid/jsonb: ok")


if __name__ == "__main__":
    main()
