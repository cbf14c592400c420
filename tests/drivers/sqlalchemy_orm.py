"""SQLAlchemy 2 (ORM, psycopg 3) and Alembic against a running slicedb.

Usage: python3 sqlalchemy_orm.py HOST PORT

1. Alembic's own migration machinery (`alembic upgrade head` through its
   command API, with a generated environment and one revision) creates a
   schema with a serial key, a unique column, a foreign key with ON DELETE
   CASCADE, a server default and an index, then a second revision adds a
   column;
2. the ORM maps classes to those tables and runs a CRUD scenario: bulk
   adds (SQLAlchemy's "insertmanyvalues" INSERT … SELECT … FROM (VALUES …)
   ORDER BY … RETURNING, whose ids it matches to its objects by order),
   relationship loading, updates, exists() and avg(), a unique and a
   foreign-key violation, and a delete that cascades.

Exits non-zero with a message on the first failure; prints
"sqlalchemy: ok" at the end.
"""
import os
import sys
import tempfile
import textwrap

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship


def check(cond, what):
    if not cond:
        raise AssertionError(what)


REVISION_1 = '''
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None

def upgrade():
    op.create_table(
        "authors",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(120), nullable=False, unique=True),
        sa.Column("name", sa.String(80)),
    )
    op.create_table(
        "books",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("author_id", sa.Integer, sa.ForeignKey("authors.id", ondelete="CASCADE"), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("pages", sa.Integer, server_default="100"),
        sa.Column("added", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    op.create_index("ix_books_author_id", "books", ["author_id"])

def downgrade():
    op.drop_table("books")
    op.drop_table("authors")
'''

REVISION_2 = '''
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"

def upgrade():
    op.add_column("books", sa.Column("rating", sa.Numeric(3, 1)))

def downgrade():
    pass
'''


def migrate(url):
    with tempfile.TemporaryDirectory() as d:
        scripts = os.path.join(d, "migrations")
        cfg = Config(os.path.join(d, "alembic.ini"))
        cfg.set_main_option("script_location", scripts)
        cfg.set_main_option("sqlalchemy.url", url)
        command.init(cfg, scripts)
        for name, text in [("0001_schema.py", REVISION_1), ("0002_rating.py", REVISION_2)]:
            with open(os.path.join(scripts, "versions", name), "w") as f:
                f.write(textwrap.dedent(text))
        command.upgrade(cfg, "head")
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
            check(version == "0002", f"alembic version {version!r}")
        engine.dispose()


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(120), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(80))
    books: Mapped[list["Book"]] = relationship(back_populates="author", passive_deletes=True)


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("authors.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(sa.String(200))
    pages: Mapped[int | None] = mapped_column(server_default="100")
    rating: Mapped[float | None] = mapped_column(sa.Numeric(3, 1))
    author: Mapped[Author] = relationship(back_populates="books")


def refused(session, obj, sqlstate, what):
    """Adding `obj` must fail at commit with an IntegrityError of `sqlstate`."""
    session.add(obj)
    try:
        session.commit()
    except sa.exc.IntegrityError as e:
        check(getattr(e.orig, "sqlstate", None) == sqlstate, f"{what}: {e.orig!r}")
        session.rollback()
        return
    raise AssertionError(f"{what} was accepted")


def crud(url):
    engine = sa.create_engine(url)
    with Session(engine) as s:
        ann = Author(email="ann@x", name="Ann")
        bob = Author(email="bob@x", name="Bob")
        ann.books = [Book(title=f"ann-{i}") for i in range(10)]
        bob.books = [Book(title=f"bob-{i}", pages=200 + i) for i in range(5)]
        s.add_all([ann, bob])
        s.commit()
        # Every object got the id the database gave its own row.
        for b in ann.books + bob.books:
            title = s.execute(sa.text("SELECT title FROM books WHERE id = :id"), {"id": b.id}).scalar_one()
            check(title == b.title, f"book {b.id} is {title!r} in the database, {b.title!r} in the ORM")
        check(len({b.id for b in ann.books + bob.books}) == 15, "distinct ids")
        check(ann.books[0].pages == 100, f"server default {ann.books[0].pages!r}")

    with Session(engine) as s:
        ann = s.scalars(sa.select(Author).where(Author.email == "ann@x")).one()
        check(sorted(b.title for b in ann.books) == sorted(f"ann-{i}" for i in range(10)), "lazy load")
        rows = s.execute(
            sa.select(Author.name, sa.func.count(Book.id), sa.func.sum(Book.pages))
            .join(Book)
            .group_by(Author.name)
            .order_by(Author.name)
        ).all()
        check(rows == [("Ann", 10, 1000), ("Bob", 5, 1010)], f"aggregate {rows!r}")
        book = s.scalars(sa.select(Book).where(Book.title == "bob-3")).one()
        book.rating = 4.5
        book.title = "bob-three"
        s.commit()
        check(
            s.execute(sa.text("SELECT title, rating FROM books WHERE id = :id"), {"id": book.id}).one()
            == ("bob-three", __import__("decimal").Decimal("4.5")),
            "update",
        )

    with Session(engine) as s:
        # exists() is SELECT EXISTS (SELECT …) without FROM; avg of integers
        # is a numeric (a Decimal to the driver), and a fraction literal is
        # exact: 0.1 + 0.2 = 0.3.
        D = __import__("decimal").Decimal
        check(s.scalar(sa.select(sa.exists().where(Book.title == "ann-1"))) is True, "exists")
        check(s.scalar(sa.select(sa.exists().where(Book.title == "nobody"))) is False, "not exists")
        ann_id = sa.select(Author.id).where(Author.email == "ann@x").scalar_subquery()
        avg = s.scalar(sa.select(sa.func.avg(Book.pages)).where(Book.author_id == ann_id))
        check(avg == D("100") and isinstance(avg, D), f"avg {avg!r}")
        check(s.scalar(sa.text("SELECT 0.1 + 0.2 = 0.3")) is True, "exact fractions")
        check(s.scalar(sa.text("SELECT pg_total_relation_size('books')")) > 0, "pg_total_relation_size")

    with Session(engine) as s:
        refused(s, Author(email="ann@x", name="again"), "23505", "a duplicate email")
        refused(s, Book(author_id=999, title="orphan"), "23503", "a book of a missing author")

    with Session(engine) as s:
        bob = s.scalars(sa.select(Author).where(Author.email == "bob@x")).one()
        s.delete(bob)
        s.commit()
        left = s.execute(sa.select(sa.func.count()).select_from(Book)).scalar_one()
        check(left == 10, f"books left after the cascade: {left}")
        names = [a.name for a in s.scalars(sa.select(Author)).all()]
        check(names == ["Ann"], f"authors {names!r}")
    engine.dispose()


def main():
    host, port = sys.argv[1], sys.argv[2]
    url = f"postgresql+psycopg://postgres@{host}:{port}/slicedb"
    migrate(url)
    print("alembic: ok")
    crud(url)
    print("sqlalchemy: ok")


if __name__ == "__main__":
    main()
