"""What an analyst sees: my_access, Results that show their rows, pandas without warnings."""

from __future__ import annotations

import warnings
from decimal import Decimal

import pytest

import tsaccess
from tests.helpers import apply_company


@pytest.fixture
def company(db):
    c = apply_company(db)
    with db.admin(autocommit=True) as conn:
        conn.execute("GRANT SELECT (time, metric_type) ON financial_metrics TO alice")
        conn.execute("ALTER TABLE sensor_readings ENABLE ROW LEVEL SECURITY")
        conn.execute(
            "CREATE POLICY eng_only ON sensor_readings FOR SELECT TO data_analysts"
            " USING (department = 'Engineering')"
        )
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id, temperature, department) VALUES"
            " (now(), 's1', 21.5, 'Engineering'), (now(), 's2', 19.0, 'Finance')"
        )
    return c


def _by_table(report):
    return {a.table: a for a in report}


def test_my_access_lists_tables_columns_and_row_slices(company):
    with company.connect("alice") as conn:
        report = tsaccess.my_access(conn)
    access = _by_table(report)
    assert report.user == report.role == "alice"
    sr, fm = access["sensor_readings"], access["financial_metrics"]
    assert (sr.select, sr.insert, sr.delete) == ("all columns", "", False)
    assert sr.row_filter.startswith("eng_only SELECT: (department = 'Engineering'")
    assert (fm.select, fm.update, fm.row_filter) == ("time, metric_type", "", "")
    assert "activity_audit" not in access  # nothing granted: not listed
    text = str(report)
    assert text.startswith("Access of alice: ")
    assert "time, metric_type" in text and "eng_only" in text
    assert "<table" in report._repr_html_() and "eng_only" in report._repr_html_()


def test_my_access_follows_the_role_and_matches_the_server(company):
    with company.connect("david", role="finance_users") as conn:
        report = tsaccess.my_access(conn)
        fm = _by_table(report)["financial_metrics"]
        assert (fm.select, fm.insert, fm.update, fm.delete) == ("all columns",) * 3 + (True,)
        assert report.role == "finance_users"
        # RLS applies to finance_users with no policy for it: the server returns no rows
        assert _by_table(report)["sensor_readings"].row_filter.startswith("no rows")
        assert conn.execute("SELECT count(*) FROM sensor_readings").fetchone() == (0,)
    with company.connect("alice") as conn:  # and alice sees exactly the slice reported
        assert conn.execute("SELECT department FROM sensor_readings").fetchall() == [
            ("Engineering",)
        ]


def test_results_show_their_first_rows(company):
    with company.connect("alice", preflight=True) as conn:
        res = tsaccess.results(conn, "SELECT sensor_id, temperature FROM sensor_readings")
        many = tsaccess.results(conn, "SELECT g FROM generate_series(1, 25) g")
    assert res.columns == ("sensor_id", "temperature")
    shown = repr(res)
    assert shown.splitlines()[0] == "<Results: 1 row>"
    assert "s1" in shown and "21.50" in shown
    assert repr(many).splitlines()[-1] == "... 15 more rows"


def test_to_pandas_without_warnings(company):
    pd = pytest.importorskip("pandas")
    with company.connect("alice", preflight=True) as conn:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # pd.read_sql would warn here
            df = tsaccess.results(conn, "SELECT sensor_id, temperature FROM sensor_readings")
            df = df.to_pandas()
        with pytest.raises(tsaccess.PreflightDenied):  # still checked before sending
            tsaccess.results(conn, "SELECT amount FROM financial_metrics")
    assert list(df.columns) == ["sensor_id", "temperature"]
    assert isinstance(df, pd.DataFrame) and len(df) == 1


def test_numeric_is_float64_unless_exact_is_asked(company, db):
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    with db.admin(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id, temperature, department) VALUES"
            " (now(), 's1', 22.5, 'Engineering'), (now(), 's3', NULL, 'Engineering')"
        )
    query = (
        "SELECT sensor_id, avg(temperature) AS avg_temperature, sum(temperature) AS total,"
        " count(*) AS n FROM sensor_readings GROUP BY sensor_id ORDER BY sensor_id"
    )
    with company.connect("alice", preflight=True) as conn:
        res = tsaccess.results(conn, query)
    assert res.numeric_columns() == ["avg_temperature", "total"]  # from the query's types
    df = res.to_pandas()
    assert str(df["avg_temperature"].dtype) == "float64" and str(df["total"].dtype) == "float64"
    assert str(df["n"].dtype) == "int64"
    assert df["avg_temperature"].tolist()[0] == 22.0 and pd.isna(df["avg_temperature"].iloc[1])
    exact = res.to_pandas(exact=True)
    assert exact["avg_temperature"].dtype == object
    assert exact["avg_temperature"].iloc[0] == Decimal("22.0000000000000000")
    assert exact["avg_temperature"].iloc[1] is None
    # polars: the same, Float64 or Decimal
    pf = res.to_polars()
    assert pf.schema["avg_temperature"] == pl.Float64 and pf["avg_temperature"].to_list() == [
        22.0,
        None,
    ]
    assert isinstance(res.to_polars(exact=True).schema["total"], pl.Decimal)
    # rows built by hand: the Decimal columns are numeric
    by_hand = tsaccess.Results(
        [{"x": Decimal("1.5"), "y": "a"}, {"x": None, "y": None}], ["x", "y"]
    )
    assert by_hand.numeric_columns() == ["x"]
    assert str(by_hand.to_pandas()["x"].dtype) == "float64"
