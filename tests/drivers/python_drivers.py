"""Python drivers against a running slicedb: psycopg 3 and asyncpg.

Usage: python3 python_drivers.py HOST PORT
Exits non-zero with a message on the first failure.
"""
import asyncio
import datetime
import decimal
import io
import sys
import uuid

import asyncpg
import psycopg
from psycopg import errors


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def psycopg3(host, port):
    dsn = f"host={host} port={port} user=postgres dbname=slicedb"
    # Default mode: psycopg opens a transaction block implicitly (BEGIN).
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE py_orders (id bigint PRIMARY KEY, customer text NOT NULL,"
                " amount numeric(12,2), placed timestamp, paid boolean)"
            )
            cur.executemany(
                "INSERT INTO py_orders VALUES (%s, %s, %s, %s, %s)",
                [
                    (i, f"c{i % 7}", decimal.Decimal(f"{i}.25"), datetime.datetime(2024, 1, 1 + i % 28, 12, 0), i % 2 == 0)
                    for i in range(1, 101)
                ],
            )
        conn.commit()
        with conn.cursor() as cur:
            cur.execute("SELECT customer, amount, placed, paid FROM py_orders WHERE id = %s", (42,))
            row = cur.fetchone()
            check(row == ("c0", decimal.Decimal("42.25"), datetime.datetime(2024, 1, 15, 12, 0), True), f"psycopg row {row!r}")
            cur.execute("SELECT count(*), sum(amount) FROM py_orders WHERE paid = %s", (True,))
            count, total = cur.fetchone()
            check(count == 50, f"psycopg count {count}")
            check(total == sum(decimal.Decimal(f"{i}.25") for i in range(2, 101, 2)), f"psycopg sum {total}")
            try:
                cur.execute("INSERT INTO py_orders VALUES (%s, %s, NULL, NULL, NULL)", (1, "dup"))
                raise AssertionError("duplicate key accepted")
            except errors.UniqueViolation:
                pass
        conn.rollback()
        with conn.cursor() as cur:
            with cur.copy("COPY py_orders (id, customer) FROM STDIN") as copy:
                for i in range(1000, 1100):
                    copy.write_row((i, f"copied{i}"))
            cur.execute("SELECT count(*) FROM py_orders")
            check(cur.fetchone()[0] == 200, "psycopg COPY rows")
        conn.commit()
    # Autocommit mode and server-side prepared statements.
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0) as conn:
        for i in range(3):
            got = conn.execute("SELECT customer FROM py_orders WHERE id = %s", (1000 + i,)).fetchone()
            check(got == (f"copied{1000 + i}",), f"prepared select {got!r}")


def psycopg_arrays(dsn):
    """Array, interval and time columns through psycopg: parameters in the
    text and the binary format, `= ANY(%s)` with a list, results in both
    formats, and COPY in both formats."""
    tags = ["a", "b c", None, 'q"uote', ""]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE py_arr (id int PRIMARY KEY, tags text[], nums bigint[], d interval, t time)")
        one_day = datetime.timedelta(days=1, hours=2)
        conn.execute(
            "INSERT INTO py_arr VALUES (%s, %s, %s, %s, %s)", (1, tags, [1, 2], one_day, datetime.time(10, 11, 12, 500000))
        )
        conn.execute(
            "INSERT INTO py_arr VALUES (%b, %b, %b, %b, %b)", (2, [], [3], datetime.timedelta(seconds=-1), datetime.time(0, 0))
        )
        for binary in (False, True):
            rows = conn.execute("SELECT * FROM py_arr ORDER BY id", binary=binary).fetchall()
            expected = [
                (1, tags, [1, 2], one_day, datetime.time(10, 11, 12, 500000)),
                (2, [], [3], datetime.timedelta(seconds=-1), datetime.time(0, 0)),
            ]
            check(rows == expected, f"psycopg arrays (binary={binary}) {rows!r}")
        got = conn.execute("SELECT id FROM py_arr WHERE id = ANY(%s) ORDER BY id", ([2, 5],)).fetchall()
        check(got == [(2,)], f"psycopg = ANY(list) {got!r}")
        got = conn.execute("SELECT id FROM py_arr WHERE %s = ANY(tags)", ('q"uote',)).fetchall()
        check(got == [(1,)], f"psycopg element = ANY(column) {got!r}")
        with conn.cursor() as cur:
            with cur.copy("COPY py_arr FROM STDIN") as copy:
                copy.write_row((3, ["x", "y z"], [7], datetime.timedelta(minutes=5), datetime.time(1, 2, 3)))
            with cur.copy("COPY py_arr FROM STDIN (FORMAT binary)") as copy:
                copy.set_types(["int4", "text[]", "int8[]", "interval", "time"])
                copy.write_row((4, ["w", None], [], datetime.timedelta(days=-3), datetime.time(23, 59)))
        got = conn.execute("SELECT tags, nums, d, t FROM py_arr WHERE id IN (3, 4) ORDER BY id").fetchall()
        check(
            got
            == [
                (["x", "y z"], [7], datetime.timedelta(minutes=5), datetime.time(1, 2, 3)),
                (["w", None], [], datetime.timedelta(days=-3), datetime.time(23, 59)),
            ],
            f"psycopg COPY of arrays {got!r}",
        )
        out = io.BytesIO()
        with conn.cursor().copy("COPY py_arr (id, tags, d) TO STDOUT") as copy:
            for chunk in copy:
                out.write(chunk)
        lines = out.getvalue().decode().splitlines()
        # COPY's text format doubles the backslash of the array's quoting.
        line = '1\t{a,"b c",NULL,"q\\\\"uote",""}\t1 day 02:00:00'
        check(line in lines, f"psycopg COPY TO of an array {lines!r}")


async def asyncpg_checks(host, port):
    conn = await asyncpg.connect(host=host, port=port, user="postgres", database="slicedb")
    try:
        await conn.execute("CREATE TABLE apg (id integer PRIMARY KEY, name text, score double precision, born date)")
        await conn.executemany(
            "INSERT INTO apg VALUES ($1, $2, $3, $4)",
            [(i, f"n{i}", i / 4, datetime.date(2000, 1, 1) + datetime.timedelta(days=i)) for i in range(50)],
        )
        row = await conn.fetchrow("SELECT name, score, born FROM apg WHERE id = $1", 10)
        check(tuple(row) == ("n10", 2.5, datetime.date(2000, 1, 11)), f"asyncpg row {tuple(row)!r}")
        stmt = await conn.prepare("SELECT count(*) FROM apg WHERE score >= $1")
        check(await stmt.fetchval(5.0) == 30, "asyncpg prepared count")
        try:
            await conn.execute("SELECT * FROM nowhere")
            raise AssertionError("unknown table accepted")
        except asyncpg.exceptions.UndefinedTableError:
            pass
        check(await conn.fetchval("SELECT count(*) FROM apg") == 50, "asyncpg usable after error")
        # asyncpg encodes by the type the server describes: `$1::int` must be an integer.
        check(await conn.fetchval("SELECT $1::int + 1", 41) == 42, "asyncpg cast parameter")
        check(await conn.fetchval("SELECT current_setting('DateStyle')") == "ISO, MDY", "asyncpg current_setting")
        await binary_copy(conn)
    finally:
        await conn.close()


BULK_COLUMNS = (
    "(id bigint PRIMARY KEY, name text, amount numeric(12,2), at timestamptz, day date,"
    " ok boolean, raw bytea, u uuid, score real, doc jsonb)"
)


async def binary_copy(conn):
    """copy_records_to_table sends binary COPY; copy_from_table and
    copy_to_table with format='binary' read and write it as a file."""
    await conn.execute("CREATE TABLE apg_bulk " + BULK_COLUMNS)
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    records = [
        (
            i,
            f"b{i}" if i % 7 else None,
            decimal.Decimal(f"-{i}.05") if i % 5 else None,
            start + datetime.timedelta(seconds=i, microseconds=i),
            datetime.date(1999, 12, 31) + datetime.timedelta(days=i),
            i % 2 == 0,
            bytes([i % 256, 0, 255]),
            uuid.UUID(int=i * 7919),
            i / 2,
            '{"k": %d}' % i,
        )
        for i in range(1, 3001)
    ]
    res = await conn.copy_records_to_table("apg_bulk", records=records)
    check(res == "COPY 3000", f"copy_records_to_table answered {res!r}")

    def norm(r):
        r = list(r)
        r[7] = str(r[7])
        return tuple(r)

    rows = await conn.fetch("SELECT * FROM apg_bulk ORDER BY id")
    check([norm(r) for r in rows] == [norm(r) for r in records], "binary COPY rows read back as written")
    # A value that breaks a column's rule fails the whole COPY.
    try:
        await conn.copy_records_to_table("apg_bulk", records=[(1, "again", None, None, None, None, None, None, None, None)])
        raise AssertionError("duplicate key accepted by binary COPY")
    except asyncpg.exceptions.UniqueViolationError:
        pass
    out = io.BytesIO()
    res = await conn.copy_from_table("apg_bulk", output=out, format="binary")
    check(res == "COPY 3000", f"binary COPY TO answered {res!r}")
    text = io.BytesIO()
    res = await conn.copy_from_table("apg_bulk", output=text, columns=["id", "name"])
    check(res == "COPY 3000", f"text COPY TO answered {res!r}")
    check(text.getvalue().count(b"\n") == 3000, "text COPY TO sends every row")
    data = out.getvalue()
    check(data.startswith(b"PGCOPY\n\xff\r\n\x00") and data.endswith(b"\xff\xff"), "binary COPY TO framing")
    await conn.execute("CREATE TABLE apg_bulk2 " + BULK_COLUMNS)
    res = await conn.copy_to_table("apg_bulk2", source=io.BytesIO(data), format="binary")
    check(res == "COPY 3000", f"binary COPY of COPY TO output answered {res!r}")
    again = await conn.fetch("SELECT * FROM apg_bulk2 ORDER BY id")
    check([norm(r) for r in again] == [norm(r) for r in records], "binary COPY TO then FROM keeps every value")


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    psycopg3(host, port)
    psycopg_arrays(f"host={host} port={port} user=postgres dbname=slicedb")
    print("psycopg 3: ok")
    asyncio.run(asyncpg_checks(host, port))
    print("asyncpg: ok")


if __name__ == "__main__":
    main()
