"""Column types that compile to Moodle's MariaDB types and to plain SQLite types in the sandbox."""

from __future__ import annotations

from sqlalchemy import BigInteger, Double, Integer, LargeBinary, Numeric, SmallInteger, Text
from sqlalchemy.dialects import mysql

# SQLite only auto-increments an INTEGER PRIMARY KEY, so ids are INTEGER there and BIGINT on MariaDB.
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
