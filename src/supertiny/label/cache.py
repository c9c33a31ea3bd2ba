"""Persistent response cache for the teacher client: one SQLite table, key -> JSON.

Every successful teacher response is written as soon as it arrives, so a labelling
run that is interrupted (crash, Ctrl-C, preemption) resumes without paying for the
requests it already made. The key is the SHA-256 of the canonical JSON of the
request body, the base URL and the sample index (`cache_key`): the same request
to the same server for the same sample returns the stored answer; n samples at
temperature > 0 are n distinct entries that a re-run reproduces.

SQLite runs in WAL mode with a busy timeout, so several processes may share one
cache file, and a lock makes one `ResponseCache` safe to use from several threads
(the client itself uses it from one event loop). Only what the caller passes to
`put` is stored: request headers (and so API keys) never reach this file.

Exercised by `python -m pytest tests/unit/label/test_label_client.py -q`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

_SCHEMA = "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no optional whitespace: equal objects, equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cache_key(body: dict, base_url: str, sample: int) -> str:
    """SHA-256 hex digest of the request body, the base URL and the sample index."""
    text = canonical_json({"base_url": base_url, "body": body, "sample": sample})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    """A key -> JSON-object store in one SQLite file (created with its parent folder)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._db.commit()

    def get(self, key: str) -> dict | None:
        """The stored object, or None when absent or unreadable (then it is re-fetched)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            value = json.loads(row[0])
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict) -> None:
        """Store (or replace) one entry and commit at once."""
        text = json.dumps(value, ensure_ascii=False)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", (key, text)
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"
