"""Which files a task server lets an agent fetch: those its work copies, jobs' steps too."""

from __future__ import annotations

from taskfleet.protocol.messages import WorkItem
from taskfleet.taskserver.file_cache import copied_files

SHA_A, SHA_B = "a" * 64, "b" * 64


def test_a_copy_file_task_and_a_client_jobs_copy_steps_grant_their_files() -> None:
    copy = WorkItem(1, 1, "copy-file", {"sha256": SHA_A, "path": "/x"}, 60)
    assert copied_files(copy) == [SHA_A]
    plan = {
        "timeout_s": 60,
        "steps": [
            {"name": "s", "task_type": "run-script", "params": {"sha256": "not a copy"}},
            {"name": "inner", "job": {"steps": [
                {"name": "c", "task_type": "copy-file", "params": {"sha256": SHA_B}},
            ]}},
        ],
    }  # fmt: skip
    assert copied_files(WorkItem(2, 2, "job", plan, 60)) == [SHA_B]
    assert copied_files(WorkItem(3, 3, "run-script", {"sha256": SHA_A}, 60)) == []
    assert copied_files(WorkItem(4, 4, "job", {"steps": "nonsense"}, 60)) == []
