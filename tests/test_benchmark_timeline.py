"""benchmarks/timeline.py: where a run's writer waits, read from a child's timeline of statements and loop steps."""

from __future__ import annotations

from pathlib import Path

from benchmarks.timeline import child_timeline, loop_report, read, transactions_report, writes_report

# Two batches on two connections: a plan's read, then its write (an INSERT, 0.2 s of client work, an UPDATE, COMMIT);
# the second batch's write starts 0.1 s after the first's COMMIT.
TIMELINE = [
    "S\t1\t0.00\t0.10\tSELECT id FROM mdl_user WHERE username IN ('a')",
    "S\t1\t0.10\t1.10\tINSERT INTO mdl_user (username) VALUES ('a')",
    "S\t1\t1.30\t1.50\tUPDATE mdl_context SET path = '/1/2'",
    "S\t1\t1.50\t1.60\tCOMMIT",
    "S\t2\t0.50\t0.70\tSELECT id FROM mdl_user WHERE username IN ('b')",
    "S\t2\t1.70\t2.70\tINSERT INTO mdl_user (username) VALUES ('b')",
    "S\t2\t2.70\t2.80\tCOMMIT",
    "L\t0.00\t0.050\tcommand_run\tengine/run/overlap.py:155 _plan",
    "L\t0.20\t0.030\t_Pending.run\tengine/users/operation.py:600 _insert_accounts",
    "L\t0.30\t0.070\tcommand_run\tengine/run/overlap.py:155 _plan",
    "L\t1.10\t0.200\t_Pending.run\tengine/moodle/contexts.py:121 set_context_paths",
    "not a line of a timeline",
]


def test_the_writes_and_the_waits_between_them_by_their_pair() -> None:
    statements, _ = read(TIMELINE)
    lines = writes_report(statements)
    assert lines[0] == ("writes: 2.70 s from the first to the last; a write at the server 2.40 s (89%), none 0.30 s")
    assert lines[1:] == [
        "    0.20 s x1    INSERT mdl_user -> UPDATE mdl_context",
        "    0.10 s x1    COMMIT -> INSERT mdl_user",
    ]


def test_write_transactions_leave_out_the_plan_reads_before_their_first_write() -> None:
    statements, _ = read(TIMELINE)
    lines = transactions_report(statements)
    assert (
        lines[0]
        == "write transactions (2, first write to COMMIT): writes 2.40 s, reads 0.00 s, between statements 0.20 s"
    )
    assert "  write   2.00 s INSERT mdl_user" in lines


def test_loop_steps_by_task_and_by_where_they_waited() -> None:
    _, steps = read(TIMELINE)
    lines = loop_report(steps)
    assert lines[0] == "event loop, by task: _Pending.run 0.23 s, command_run 0.12 s"
    assert lines[1] == (
        "    0.20 s x1    avg 200.0 ms  _Pending.run: engine/users/operation.py:600 _insert_accounts -> "
        "engine/moodle/contexts.py:121 set_context_paths"
    )
    assert any(
        "command_run: engine/run/overlap.py:155 _plan -> engine/run/overlap.py:155 _plan" in line for line in lines
    )


def test_the_measured_child_timeline_is_the_largest_of_its_processes(tmp_path: Path) -> None:
    prefix = tmp_path / "case-1.timeline"
    assert child_timeline(prefix) is None
    (tmp_path / "case-1.timeline.10").write_text("S\t1\t0\t1\tCOMMIT\n" * 3)
    (tmp_path / "case-1.timeline.11").write_text("\n")
    assert child_timeline(prefix) == tmp_path / "case-1.timeline.10"
