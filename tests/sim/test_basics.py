"""Source URLs, ODBC connection strings, customer-number masks and ChangeSet bookkeeping."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from caselle_sim import ChangeSet, SourceSpec
from caselle_sim.util import format_numbers, mask_digits


def test_sqlite_url():
    spec = SourceSpec.from_url("sqlite:////tmp/x/springfield.db")
    assert (spec.engine, spec.database) == ("sqlite", "/tmp/x/springfield.db")
    assert spec.url == "sqlite:////tmp/x/springfield.db"
    assert spec.odbc_connection_string() == "Driver={SQLite3};Database=/tmp/x/springfield.db;StepAPI=1;"


def test_postgresql_url():
    spec = SourceSpec.from_url("postgresql://postgres@127.0.0.1:5432/springfield")
    assert (spec.engine, spec.host, spec.port, spec.user, spec.database) == (
        "postgresql", "127.0.0.1", 5432, "postgres", "springfield")
    assert spec.odbc_connection_string() == (
        "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=springfield;UID=postgres;"
        "UseDeclareFetch=1;Fetch=10000;CommLog=0;")


def test_mariadb_url():
    spec = SourceSpec.from_url("mariadb://root@127.0.0.1:3306/springfield")
    assert spec.engine == "mariadb"
    assert spec.odbc_connection_string() == (
        "Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Database=springfield;UID=root;PWD=;")


@pytest.mark.parametrize("url", ["oracle://x/y", "sqlite:///relative.db", "postgresql://u@h:1/bad-name",
                                 "mariadb://root@h:3306/x;drop"])
def test_bad_urls_are_refused(url):
    with pytest.raises(ValueError):
        SourceSpec.from_url(url)


def test_drop_of_a_missing_sqlite_file_is_a_no_op(tmp_path):
    spec = SourceSpec.from_url(f"sqlite:///{tmp_path}/none.db")
    spec.drop()
    spec.drop()
    assert not spec.exists()


@pytest.mark.parametrize(("mask", "number", "text"), [
    ("###-#####-##", 123, "000-00001-23"),
    ("###-#####-##", 10_000_012_34, "100-00012-34"),
    ("#.####.#", 123456, "1.2345.6"),
])
def test_numbers_are_formatted_through_the_mask(mask, number, text):
    assert format_numbers(np.array([number]), mask)[0] == text


def test_masks_with_other_characters_are_refused():
    with pytest.raises(ValueError):
        mask_digits("###/###")
    with pytest.raises(ValueError):
        format_numbers(np.array([10_000]), "####")


def test_changeset_keeps_net_effects():
    t = datetime(2026, 1, 1)
    a, b = ChangeSet(t, t), ChangeSet(t, t)
    a["UB_Customer"].insert([1, 2])
    a["UB_Customer"].update([3])
    b["UB_Customer"].update([1, 4])
    b["UB_Customer"].delete([2, 3])
    m = a.merge(b)
    assert m["UB_Customer"].inserted == {1}
    assert m["UB_Customer"].updated == {4}
    assert m["UB_Customer"].deleted == {3}
    assert m.counts() == {"UB_Customer": (1, 1, 1)}
    assert not ChangeSet(t, t).counts() and ChangeSet(t, t).is_empty()
