"""The store's rows for actions and the observations they start: every SQL statement of the
dispatcher, the action workers and observation arbitration.

A planned action is frozen when it is planned: its row names the exact configuration it runs
(`action_configs`, keyed by the hash of the configuration's JSON, so one configuration planned
a thousand times is stored once), the revision of the rule file it came from, its trigger's
expiry and its template values as typed JSON (null for a missing value). Nothing here parses
or decides; `runtime.dispatch` does.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from tracerules.runtime.store.dialect import Connection, Dialect
from tracerules.runtime.store.read import marks

# The migration after version 3 (MIGRATIONS in store.py): actions frozen at plan time.
SCHEMA_ACTIONS_FROZEN: Final = """
CREATE TABLE action_configs (
    hash        TEXT PRIMARY KEY,          -- sha256 of `config`
    config      TEXT NOT NULL              -- the action as compiled: its type's options, JSON
);
-- the configuration the action runs (NULL: planned before actions were frozen)
ALTER TABLE actions ADD COLUMN config_hash TEXT REFERENCES action_configs(hash);
-- content hash of the rule file, and the git commit of the rules, it was planned under
ALTER TABLE actions ADD COLUMN rule_revision TEXT;
ALTER TABLE actions ADD COLUMN rule_commit TEXT;
-- its trigger's expiry (seconds) when planned: how long a failed action is tried again
ALTER TABLE actions ADD COLUMN expiry REAL
"""

# The next migration: an attempt about to reach a receiver is recorded durably before it goes
# out, so that recovery after a crash knows whether the receiver may already have it.
SCHEMA_ACTIONS_SENDING: Final = """
-- when the current claim's latest attempt was recorded as going out (NULL: none went out)
ALTER TABLE actions ADD COLUMN sending_at REAL
"""

# What a run's log says when its outcome sent the action back to pending: how recovery told
# finished runs from crashes before `finished_runs` was a column. Read once, to fill that
# column for rows written before it (the migration below, and an older store's export).
_REQUEUED_BY_OUTCOME: Final = ("failed; tried again", "interrupted")


def _count_in_log(mark: str) -> str:
    return f"(length(log) - length(replace(log, '{mark}', ''))) / length('{mark}')"


def finished_runs_in_log(log: str) -> int:
    """`finished_runs` of a row written before the column, from its log's wording."""
    return sum(log.count(mark) for mark in _REQUEUED_BY_OUTCOME)


# The next migration: how many of an action's claims ended with a recorded outcome that sent
# it back to pending, counted as they happen, so that recovery never reads its log's wording
# (a receiver's error text echoed there could say "interrupted").
SCHEMA_ACTIONS_FINISHED_RUNS: Final = f"""
-- claims that ended with an outcome sending the action back to pending (a failure to be
-- tried again, a run interrupted): every other claim counted in `attempts` was a crash
ALTER TABLE actions ADD COLUMN finished_runs INTEGER NOT NULL DEFAULT 0;
-- rows from before the column: counted once from their log, as recovery used to count
UPDATE actions SET finished_runs = {" + ".join(map(_count_in_log, _REQUEUED_BY_OUTCOME))}
"""


@dataclass(frozen=True)
class PlannedRow:
    """One planned action, as inserted."""

    decision: int
    trigger: str
    event_id: str
    idempotency_key: str
    position: int
    type: str
    label: str
    status: str
    request: str  # typed template values, JSON
    notice_id: int | None
    at: float
    config_hash: str
    config: str
    rule_revision: str
    rule_commit: str | None
    expiry: float


@dataclass(frozen=True)
class ObservationRow:
    """An observatory's current observation, as arbitration records it."""

    observatory: str
    test: bool
    action: int
    trigger: str
    event_id: str
    priority: int
    ra: float | None
    dec: float | None
    started: float
    until: float


_PLANNED_COLUMNS: Final = (
    "decision, trigger, event_id, idempotency_key, position, type, label, status, request, "
    "notice_id, created_at, updated_at, config_hash, rule_revision, rule_commit, expiry"
)
_READY: Final = "status='pending' AND (retry_at IS NULL OR retry_at <= ?)"


class ActionRows:
    """A mixin of `Store`: the rows of planned, running and finished actions."""

    db: Connection
    dialect: Dialect

    if TYPE_CHECKING:

        def transaction(self) -> AbstractContextManager[Connection]: ...

        def lock_observatory(self, observatory: str, test: bool) -> None: ...

    # -- planning (inside the decision's transaction) -----------------------------------------

    def plan_action(self, row: PlannedRow) -> int | None:
        """Insert a planned action; None when its idempotency key is already taken (the
        decision planned it before: a redelivered notice must not act twice)."""
        self.db.execute(
            "INSERT INTO action_configs (hash, config) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (row.config_hash, row.config),
        )
        cursor = self.db.execute(
            f"INSERT INTO actions ({_PLANNED_COLUMNS}) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"
            + self.dialect.returning_id,
            (
                row.decision,
                row.trigger,
                row.event_id,
                row.idempotency_key,
                row.position,
                row.type,
                row.label,
                row.status,
                row.request,
                row.notice_id,
                row.at,
                row.at,
                row.config_hash,
                row.rule_revision,
                row.rule_commit,
                row.expiry,
            ),
        )
        return self.dialect.new_id(cursor)

    def set_action_arbitrated(self, action_id: int, status: str, log: str, request: str) -> None:
        """An observation's arbitration: its status, the ruling, and the plan it runs."""
        self.db.execute(
            "UPDATE actions SET status=?, log=?, request=? WHERE id=?",
            (status, log, request, action_id),
        )

    def earlier_plans(self, trigger: str, event_id: str, before: int) -> list[dict[str, Any]]:
        """Plans of the trigger's earlier observation actions for the event that were not
        refused or refused by arbitration (planned, running or done; in a dry run, as
        planned), oldest first."""
        rows = self.db.execute(
            "SELECT request FROM actions WHERE trigger=? AND event_id=? AND id<? "
            "AND status IN ('pending', 'running', 'done', 'dry-run') ORDER BY id",
            (trigger, event_id, before),
        ).fetchall()
        plans = (json.loads(r["request"] or "{}").get("_plan") for r in rows)
        return [p for p in plans if isinstance(p, dict)]

    # -- observations (arbitration) -----------------------------------------------------------

    def current_observation(self, observatory: str, test: bool, now: float) -> sqlite3.Row | None:
        """The observation in progress at an observatory (test or live), with its action's
        plan as `planned`. Locked (PostgreSQL) until the decision's transaction ends, so that
        two services never both take a free observatory."""
        self.lock_observatory(observatory, test)
        row: sqlite3.Row | None = self.db.execute(
            "SELECT o.*, a.request AS planned FROM observations o "
            "LEFT JOIN actions a ON a.id = o.action "
            "WHERE o.observatory=? AND o.test=? AND o.until>?",
            (observatory, int(test), now),
        ).fetchone()
        return row

    def start_observation(self, obs: ObservationRow) -> None:
        """Record the observatory's current observation, replacing the one it overrides."""
        self.db.execute(
            "INSERT INTO observations (observatory, test, action, trigger, event_id, "
            "priority, ra, dec, started, until) VALUES (?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (observatory, test) DO UPDATE SET action=excluded.action, "
            "trigger=excluded.trigger, event_id=excluded.event_id, priority=excluded.priority, "
            "ra=excluded.ra, dec=excluded.dec, started=excluded.started, until=excluded.until",
            (
                obs.observatory,
                int(obs.test),
                obs.action,
                obs.trigger,
                obs.event_id,
                obs.priority,
                obs.ra,
                obs.dec,
                obs.started,
                obs.until,
            ),
        )

    # -- running ------------------------------------------------------------------------------

    def ready_actions(self, now: float, limit: int = 500) -> list[sqlite3.Row]:
        """Pending actions whose retry time has come, oldest first."""
        return list(
            self.db.execute(
                "SELECT id, trigger, position, type, config_hash, decision FROM actions "
                f"WHERE {_READY} ORDER BY id LIMIT ?",
                (now, limit),
            )
        )

    def action_config(self, config_hash: str) -> str | None:
        """The configuration JSON stored under a hash."""
        row = self.db.execute(
            "SELECT config FROM action_configs WHERE hash=?", (config_hash,)
        ).fetchone()
        return None if row is None else str(row[0])

    def claim_action(
        self, now: float, action_id: int | None = None, owner: str | None = None
    ) -> sqlite3.Row | None:
        """Atomically take one ready pending action (a given one, or the oldest), recording
        the process that runs it; the row as it was before the claim."""
        with self.transaction() as db:
            where = f"id=? AND {_READY}" if action_id else _READY
            params: tuple[Any, ...] = (action_id, now) if action_id else (now,)
            # PostgreSQL: FOR UPDATE SKIP LOCKED, so that two services' workers never take
            # the same action (SQLite's BEGIN IMMEDIATE already lets one writer in at a time).
            row: sqlite3.Row | None = db.execute(
                f"SELECT * FROM actions WHERE {where} ORDER BY id LIMIT 1{self.dialect.claim}",
                params,
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE actions SET status='running', attempts=attempts+1, retry_at=NULL, "
                "child=NULL, sending_at=NULL, owner=?, updated_at=? WHERE id=?",
                (owner, now, row["id"]),
            )
            return row

    def record_sending(self, action_id: int, note: str, now: float) -> bool:
        """Before an attempt goes out: say so durably (committed before the request is sent),
        so that a crash before its outcome is stored is known to have maybe reached the
        receiver. False when the action is no longer this run's (taken back by recovery)."""
        with self.transaction() as db:
            changed = db.execute(
                "UPDATE actions SET sending_at=?, log=log || ? WHERE id=? AND status='running'",
                (now, note, action_id),
            ).rowcount
        return bool(changed)

    def record_action_child(self, action_id: int, token: str) -> None:
        """The process an action started (a command, a plugin script)."""
        with self.transaction() as db:
            db.execute("UPDATE actions SET child=? WHERE id=?", (token, action_id))

    def decision_start(self, decision_id: int) -> tuple[float | None, str | None] | None:
        """(the event's time, else the decision's clock; the decision's rule revision)."""
        row = self.db.execute(
            "SELECT e.event_time, d.at, d.rule_revision FROM decisions d "
            "LEFT JOIN events e ON e.id = d.event WHERE d.id=?",
            (decision_id,),
        ).fetchone()
        if row is None:
            return None
        start = row["event_time"] if row["event_time"] is not None else row["at"]
        return (None if start is None else float(start)), row["rule_revision"]

    def earlier_files(self, decision_id: int, position: int) -> list[str]:
        """Files written by the decision's earlier actions (plugins build on them)."""
        rows = self.db.execute(
            "SELECT files FROM actions WHERE decision=? AND position<? AND status='done' "
            "ORDER BY position",
            (decision_id, position),
        )
        return [name for r in rows for name in json.loads(r["files"] or "[]")]

    def finish_action(
        self,
        action_id: int,
        status: str,
        log: str,
        files: list[str],
        retry_at: float | None,
        now: float,
    ) -> bool:
        """Record a run's outcome, once: only an action still 'running' takes it. An outcome
        that sends it back to pending counts as a finished run (not a crash)."""
        with self.transaction() as db:
            changed = db.execute(
                "UPDATE actions SET status=?, log=log || ?, files=?, retry_at=?, updated_at=?, "
                "finished_runs=finished_runs + ? WHERE id=? AND status='running'",
                (
                    status,
                    log,
                    json.dumps(files),
                    retry_at,
                    now,
                    int(status == "pending"),
                    action_id,
                ),
            ).rowcount
        return bool(changed)

    def superseded_reasons(self, ids: list[int]) -> dict[int, str]:
        """Why these superseded actions were not run: the log line that says so."""
        if not ids:
            return {}
        rows = self.db.execute(
            f"SELECT id, log FROM actions WHERE id IN ({marks(ids)}) AND status='superseded'",
            tuple(ids),
        )
        found = {}
        for row in rows:
            lines = [ln for ln in str(row["log"]).splitlines() if ln.startswith("superseded: ")]
            found[int(row["id"])] = lines[-1] if lines else "superseded"
        return found

    # -- crash recovery -----------------------------------------------------------------------

    def running_actions(self) -> Iterator[sqlite3.Row]:
        return iter(
            self.db.execute(
                "SELECT id, trigger, position, type, config_hash, decision, attempts, owner, "
                "child, finished_runs, updated_at, sending_at, idempotency_key FROM actions "
                "WHERE status='running'"
            ).fetchall()
        )

    def requeue_action(
        self, action_id: int, status: str, note: str, now: float, seen_at: float
    ) -> bool:
        """A crashed run's action back to `status`, if nobody touched it since `seen_at`."""
        with self.transaction() as db:
            changed = db.execute(
                "UPDATE actions SET status=?, owner=NULL, log=log || ?, updated_at=? "
                "WHERE id=? AND status='running' AND updated_at=?",
                (status, note, now, action_id, seen_at),
            ).rowcount
        return bool(changed)

    def release_action(self, action_id: int, retry_at: float, note: str, now: float) -> None:
        """A running action whose run broke back to pending (a finished run, not a crash)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE actions SET status='pending', retry_at=?, log=log || ?, updated_at=?, "
                "finished_runs=finished_runs + 1 WHERE id=? AND status='running'",
                (retry_at, note, now, action_id),
            )
