"""The Spark session podmortem runs on: an optional extra (``pip install podmortem[spark]``).

Settings that change results are pinned here, not left to a cluster's defaults: UTC session
time (event timestamps are UTC instants), ANSI mode off (Spark 4 turns it on; a failed cast
in a rule must read as "no match", as in DuckDB, not abort the query), partition values read
as strings (a cluster named ``2024`` stays a name).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from podmortem.errors import CapabilityUnavailable

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

INSTALL_HINT = "pip install podmortem[spark]"
DEFAULT_MASTER = "local[2]"

# Applied to every session podmortem uses (its own or a caller's).
RESULT_SETTINGS: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "false",
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
}


def require_pyspark() -> None:
    """Raise :class:`CapabilityUnavailable` (exit 4) when PySpark or its Arrow support is
    missing."""
    try:
        import pandas  # noqa: F401 - pyspark's Arrow functions require it
        import pyarrow  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise CapabilityUnavailable(
            f"the Spark engine needs PySpark ({exc.name} is not installed): {INSTALL_HINT}"
        ) from None


def session(master: str = DEFAULT_MASTER, conf: dict[str, str] | None = None) -> SparkSession:
    """The active session if there is one (a notebook's, a test's), else a new one on
    ``master``; podmortem's result settings are applied either way."""
    require_pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        spark = active
    else:
        # Workers must run the same interpreter (podmortem, DuckDB and pyarrow live there).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        builder: Any = SparkSession.builder.master(master).appName("podmortem-audit")
        for k, v in {
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",  # the CLI owns the terminal
            "spark.sql.shuffle.partitions": "8",
            "spark.driver.memory": "2g",
            **(conf or {}),
        }.items():
            builder = builder.config(k, v)
        try:
            spark = builder.getOrCreate()
        except Exception as exc:  # the JVM failed to start: no Java, bad master URL
            raise CapabilityUnavailable(
                f"cannot start Spark on {master}: {_one_line(exc)}"
            ) from None
        spark.sparkContext.setLogLevel("ERROR")
    for k, v in RESULT_SETTINGS.items():
        spark.conf.set(k, v)
    return spark


def _one_line(exc: object) -> str:
    return " ".join(str(exc).split())[:300]
