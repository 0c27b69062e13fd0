"""The batch ledger: one SQLite file in OUTROOT, one row per study and analysis. Only the driver writes it (one
writer: safe on shared file systems); workers report back through Dask."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

COLUMNS = ("study", "analysis", "status", "input_fingerprint", "settings_hash", "versions", "attempts", "error",
           "seconds", "started", "finished", "output")


class Ledger:
    def __init__(self, path: str | Path):
        self.connection = sqlite3.connect(str(path))
        self.connection.execute(
            "CREATE TABLE IF NOT EXISTS runs (study TEXT, analysis TEXT, status TEXT, input_fingerprint TEXT, "
            "settings_hash TEXT, versions TEXT, attempts INTEGER DEFAULT 0, error TEXT, seconds REAL, started TEXT, "
            "finished TEXT, output TEXT, PRIMARY KEY (study, analysis))")
        self.connection.commit()

    def get(self, study: str, analysis: str) -> dict | None:
        row = self.connection.execute(f"SELECT {', '.join(COLUMNS)} FROM runs WHERE study = ? AND analysis = ?",
                                      (study, analysis)).fetchone()
        return dict(zip(COLUMNS, row, strict=True)) if row else None

    def record(self, study: str, analysis: str, **values) -> None:
        values = {**(self.get(study, analysis) or {"attempts": 0}), **values, "study": study, "analysis": analysis}
        names = [c for c in COLUMNS if c in values]
        self.connection.execute(f"INSERT OR REPLACE INTO runs ({', '.join(names)}) VALUES "
                                f"({', '.join('?' for _ in names)})", [values[n] for n in names])
        self.connection.commit()

    def rows(self) -> list[dict]:
        return [dict(zip(COLUMNS, row, strict=True)) for row in
                self.connection.execute(f"SELECT {', '.join(COLUMNS)} FROM runs ORDER BY study, analysis")]

    def close(self) -> None:
        self.connection.close()


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
