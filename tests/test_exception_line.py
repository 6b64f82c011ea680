"""The one line of a failed activity that the verdict's reasons show."""

from pgdrill.evidence.build import exception_line


def test_the_message_is_kept_with_its_fix_line():
    formatted = [
        "Traceback (most recent call last):\n",
        '  File "x.py", line 1, in f\n',
        "chaoslib.exceptions.ActivityFailed: PreflightRefused: the Kubernetes API "
        "refused to create Backup (HTTP 403: forbidden)\n",
        "  fix: grant the drill's service account the RBAC\n",
    ]
    line = exception_line(formatted)
    assert "HTTP 403" in line and line.endswith("fix: grant the drill's service account the RBAC")


def test_a_one_line_exception_is_itself():
    assert exception_line(["ValueError: bad\n"]) == "ValueError: bad"


def test_the_verdict_names_the_403_not_only_the_fix():
    from pgdrill.evidence.build import failed_activities

    journal = {
        "run": [
            {
                "status": "failed",
                "activity": {"name": "manual-backup"},
                "exception": [
                    "chaoslib.exceptions.ActivityFailed: PreflightRefused: "
                    "the Kubernetes API refused to create Backup (HTTP 403: "
                    "forbidden)\n",
                    "  fix: grant the RBAC\n",
                ],
            }
        ]
    }
    [reason] = failed_activities(journal)
    assert reason == (
        "activity 'manual-backup' failed: the Kubernetes API refused to create "
        "Backup (HTTP 403: forbidden) fix: grant the RBAC"
    )
