"""The Caselle source tables, exactly as the source contract names and types them.

The contract gives SQL Server types; each engine gets its nearest native type so
that an ODBC reader sees what it would see on the real thing:

=============  ==============  ===============  ==================
contract       PostgreSQL      MariaDB          SQLite (declared)
=============  ==============  ===============  ==================
INT            integer         INT              INT
BIGINT         bigint          BIGINT           BIGINT
SMALLINT       smallint        SMALLINT         SMALLINT
VARCHAR(n)     varchar(n)      VARCHAR(n)       VARCHAR(n)
CHAR(n)        char(n)         CHAR(n)          CHAR(n)
DECIMAL(12,2)  numeric(12,2)   DECIMAL(12,2)    DECIMAL(12,2)
DATE           date            DATE             DATE
DATETIME       timestamp(3)    DATETIME(3)      DATETIME
=============  ==============  ===============  ==================

SQLite only declares the type: values are stored the way a naive application
would store them (money as REAL, dates and times as ISO text), which is what
makes SQLite the hard case for a reader.

``SIM_State`` is the simulator's own bookkeeping (clock, step counter, ID
sequences); it is not part of the contract and a reader never touches it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Column kinds. "money" is DECIMAL(12,2); "datetime" is DATETIME (local, naive).
INT, BIGINT, SMALLINT, VARCHAR, CHAR, MONEY, DATE, DATETIME = (
    "int", "bigint", "smallint", "varchar", "char", "money", "date", "datetime",
)
INTEGER_KINDS = frozenset({INT, BIGINT, SMALLINT})
TEXT_KINDS = frozenset({VARCHAR, CHAR})

STATE_TABLE = "SIM_State"


@dataclass(frozen=True)
class Column:
    """One column: contract name, kind, length (text only) and nullability."""

    name: str
    kind: str
    length: int | None = None
    nullable: bool = False
    sensitive: bool = False

    def contract_type(self) -> str:
        """The SQL Server type the contract gives, e.g. ``VARCHAR(60)``."""
        if self.kind in TEXT_KINDS:
            return f"{self.kind.upper()}({self.length})"
        return {INT: "INT", BIGINT: "BIGINT", SMALLINT: "SMALLINT", MONEY: "DECIMAL(12,2)",
                DATE: "DATE", DATETIME: "DATETIME"}[self.kind]


@dataclass(frozen=True)
class Table:
    """A contract table: ordered columns and the single-column primary key."""

    name: str
    columns: tuple[Column, ...]
    key: str

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name}")


def _c(name: str, kind: str, length: int | None = None, null: bool = False, sensitive: bool = False) -> Column:
    return Column(name, kind, length, null, sensitive)


TABLES: dict[str, Table] = {t.name: t for t in (
    Table("SM_Organization", (
        _c("OrgCode", VARCHAR, 10),
        _c("OrgName", VARCHAR, 100),
        _c("TimeZone", VARCHAR, 40),
        _c("CustomerNumberMask", VARCHAR, 20),
    ), "OrgCode"),
    Table("SM_Contact", (
        _c("ContactID", INT),
        _c("ContactType", CHAR, 1),
        _c("FirstName", VARCHAR, 40, True),
        _c("MiddleName", VARCHAR, 40, True),
        _c("LastName", VARCHAR, 60, True),
        _c("BusinessName", VARCHAR, 100, True),
        _c("MailAddress1", VARCHAR, 60, True),
        _c("MailAddress2", VARCHAR, 60, True),
        _c("MailCity", VARCHAR, 40, True),
        _c("MailState", CHAR, 2, True),
        _c("MailZip", VARCHAR, 10, True),
        _c("Email", VARCHAR, 120, True),
        _c("Phone", VARCHAR, 20, True),
        _c("SSN", CHAR, 11, True, True),
        _c("BirthDate", DATE, None, True, True),
        _c("DriversLicense", VARCHAR, 20, True, True),
        _c("Notes", VARCHAR, 4000, True, True),
    ), "ContactID"),
    Table("UB_Location", (
        _c("LocationID", INT),
        _c("HouseNumber", VARCHAR, 10),
        _c("StreetName", VARCHAR, 60),
        _c("Unit", VARCHAR, 10, True),
        _c("City", VARCHAR, 40),
        _c("State", CHAR, 2),
        _c("Zip", VARCHAR, 10),
        _c("ParcelNumber", VARCHAR, 20, True),
        _c("District", VARCHAR, 10, True),
        _c("Cycle", SMALLINT, None, True),
        _c("Route", SMALLINT, None, True),
    ), "LocationID"),
    Table("UB_Customer", (
        _c("CustomerID", INT),
        _c("CustomerNumber", VARCHAR, 20),
        _c("LocationID", INT),
        _c("ContactID", INT),
        _c("LandlordContactID", INT, None, True),
        _c("MasterCustomerID", INT, None, True),
        _c("CustomerType", VARCHAR, 4),
        _c("Status", CHAR, 1),
        _c("OnlineAccess", CHAR, 1),
        _c("ConnectDate", DATE),
        _c("FinalBillDate", DATE, None, True),
        _c("DirectPayRouting", CHAR, 9, True, True),
        _c("DirectPayAccount", VARCHAR, 17, True, True),
        _c("CreditRating", CHAR, 1, True, True),
        _c("CollectionCode", VARCHAR, 4, True, True),
    ), "CustomerID"),
    Table("UB_Transaction", (
        _c("TransactionID", BIGINT),
        _c("CustomerID", INT),
        _c("TransactionType", VARCHAR, 6),
        _c("ServiceCode", VARCHAR, 4, True),
        _c("Description", VARCHAR, 60),
        _c("Amount", MONEY),
        _c("TransactionDate", DATE),
        _c("InputDate", DATETIME),
        _c("DueDate", DATE, None, True),
        _c("Period", CHAR, 7),
        _c("ReferenceNumber", VARCHAR, 20, True),
        _c("ReceiptID", BIGINT, None, True),
        _c("VoidsTransactionID", BIGINT, None, True),
    ), "TransactionID"),
    Table("CR_Receipt", (
        _c("ReceiptID", BIGINT),
        _c("ReceiptNumber", VARCHAR, 12),
        _c("CustomerID", INT, None, True),
        _c("ReceiptDate", DATETIME),
        _c("InputDate", DATETIME),
        _c("PaymentMethod", VARCHAR, 6),
        _c("Amount", MONEY),
        _c("Status", CHAR, 1),
        _c("StatusDate", DATETIME),
        _c("ConfirmationNumber", VARCHAR, 30, True),
        _c("PayerName", VARCHAR, 100, True, True),
    ), "ReceiptID"),
    Table("UB_Balance", (
        _c("CustomerID", INT),
        _c("AsOf", DATETIME),
        _c("BalanceCurrent", MONEY),
        _c("Balance30", MONEY),
        _c("Balance60", MONEY),
        _c("Balance90", MONEY),
        _c("Balance120", MONEY),
        _c("TotalBalance", MONEY),
        _c("LastBillDate", DATE, None, True),
        _c("LastBillAmount", MONEY, None, True),
        _c("DueDate", DATE, None, True),
        _c("LastPaymentDate", DATE, None, True),
        _c("LastPaymentAmount", MONEY, None, True),
        _c("Delinquent", CHAR, 1),
    ), "CustomerID"),
    Table("UB_PeriodClose", (
        _c("CloseID", INT),
        _c("ClosedAt", DATETIME),
        _c("PurgeBefore", DATE, None, True),
    ), "CloseID"),
    Table("PI_Assessment", (
        _c("AssessmentID", INT),
        _c("ParcelNumber", VARCHAR, 20),
        _c("OwnerContactID", INT),
        _c("LocationID", INT, None, True),
        _c("District", VARCHAR, 10),
        _c("Description", VARCHAR, 60),
        _c("OriginalAmount", MONEY),
        _c("PrincipalBalance", MONEY),
        _c("InstallmentAmount", MONEY),
        _c("NextDueDate", DATE, None, True),
        _c("Status", CHAR, 1),
    ), "AssessmentID"),
)}

STATE = Table(STATE_TABLE, (_c("Key", VARCHAR, 40), _c("Value", VARCHAR, 4000)), "Key")

# Secondary indexes a real Caselle plausibly has on the change signals.
INDEXES: tuple[tuple[str, str], ...] = (
    ("UB_Transaction", "InputDate"),
    ("UB_Transaction", "CustomerID"),
    ("CR_Receipt", "InputDate"),
    ("CR_Receipt", "StatusDate"),
    ("UB_Balance", "AsOf"),
)

# Load order: parents before children (no foreign keys are declared, as in Caselle).
TABLE_ORDER: tuple[str, ...] = (
    "SM_Organization", "SM_Contact", "UB_Location", "UB_Customer", "UB_Transaction",
    "CR_Receipt", "UB_Balance", "UB_PeriodClose", "PI_Assessment",
)

_PG_TYPES = {INT: "integer", BIGINT: "bigint", SMALLINT: "smallint", MONEY: "numeric(12,2)",
             DATE: "date", DATETIME: "timestamp(3)"}
_MARIA_TYPES = {INT: "INT", BIGINT: "BIGINT", SMALLINT: "SMALLINT", MONEY: "DECIMAL(12,2)",
                DATE: "DATE", DATETIME: "DATETIME(3)"}


def engine_type(column: Column, engine: str) -> str:
    """The column type to declare on ``engine`` (see the module table)."""
    if engine == "sqlite":
        return column.contract_type()
    if column.kind in TEXT_KINDS:
        name = column.kind if engine == "postgresql" else column.kind.upper()
        return f"{name}({column.length})"
    return (_PG_TYPES if engine == "postgresql" else _MARIA_TYPES)[column.kind]


def quote(name: str, engine: str) -> str:
    """Quote an identifier the way the engine's own DDL would."""
    return f"`{name}`" if engine == "mariadb" else f'"{name}"'


def create_table_sql(table: Table, engine: str, with_key: bool = True) -> str:
    """CREATE TABLE with quoted PascalCase identifiers; the key can be added later (faster bulk loads)."""
    cols = [f"{quote(c.name, engine)} {engine_type(c, engine)} {'NULL' if c.nullable else 'NOT NULL'}"
            for c in table.columns]
    if with_key:
        cols.append(f"PRIMARY KEY ({quote(table.key, engine)})")
    tail = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" if engine == "mariadb" else ""
    return f"CREATE TABLE {quote(table.name, engine)} (\n  " + ",\n  ".join(cols) + f"\n){tail}"


def add_key_sql(table: Table, engine: str) -> str:
    """ALTER TABLE ... ADD PRIMARY KEY, for engines where that is cheaper after the load."""
    return f"ALTER TABLE {quote(table.name, engine)} ADD PRIMARY KEY ({quote(table.key, engine)})"


def index_sql(table: str, column: str, engine: str) -> str:
    """CREATE INDEX IX_<Table>_<Column>."""
    return (f"CREATE INDEX {quote(f'IX_{table}_{column}', engine)} "
            f"ON {quote(table, engine)} ({quote(column, engine)})")
