"""Column types that compile to Moodle's MariaDB types, its PostgreSQL types and plain SQLite types (the sandbox).

PostgreSQL needs no variant: the generic types compile to Moodle's there (bigint, integer, smallint, text, bytea,
numeric, double precision; tests/moodle/test_schema_conformance.py creates the tables and compares them).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Double, Integer, LargeBinary, Numeric, SmallInteger, Text
from sqlalchemy.dialects import mysql

# SQLite only auto-increments an INTEGER PRIMARY KEY, so ids are INTEGER there and BIGINT on MariaDB; on PostgreSQL a
# BIGINT primary key is a BIGSERIAL, whose sequence `<table>_id_seq` is named as Moodle's.
ID = BigInteger().with_variant(Integer(), "sqlite")
BIG = BigInteger()
INT = Integer()
MEDIUM = Integer().with_variant(mysql.MEDIUMINT(), "mysql", "mariadb")
SMALL = SmallInteger()
TINY = SmallInteger().with_variant(mysql.TINYINT(), "mysql", "mariadb")
LONGTEXT = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
LONGBLOB = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
DOUBLE: Double[float] = Double()

__all__ = ["BIG", "DOUBLE", "ID", "INT", "LONGBLOB", "LONGTEXT", "MEDIUM", "SMALL", "TINY", "Numeric"]
