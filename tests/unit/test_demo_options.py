"""The demo's sizes scale together or are refused with a message (``--students 2000`` used
to end in "Sample larger than population": --never-shared kept its default of 7,983)."""

from __future__ import annotations

import pytest

from consentgate.cli import main
from consentgate.errors import ConfigError
from consentgate_dev.demo.cli import demo_options


def test_never_shared_scales_with_students() -> None:
    assert demo_options(2000, 38, None).never_shared == 213
    assert demo_options(74_878, 38, None).never_shared == 7_983


def test_the_case_sizes_are_the_defaults() -> None:
    options = demo_options(74_878, 38, None)
    assert (options.students, options.partners) == (74_878, 38)


@pytest.mark.parametrize(
    ("students", "partners", "never_shared", "words"),
    [
        (2000, 38, 7983, "--never-shared"),
        (1, 38, None, "--students"),
        (100, 0, None, "--partners"),
        (100, 100, None, "--partners"),
        (100, 3, -1, "--never-shared"),
    ],
)
def test_sizes_that_make_no_case_are_refused(
    students: int, partners: int, never_shared: int | None, words: str
) -> None:
    with pytest.raises(ConfigError, match=words):
        demo_options(students, partners, never_shared)


def test_the_cli_refuses_with_a_message_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--students", "2000", "--never-shared", "7983"]) == 2
    err = capsys.readouterr().err
    assert "--never-shared must be between 0 and --students - 1 (1999)" in err
    assert "Traceback" not in err


def test_every_demo_option_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for words in (
        "--students STUDENTS students in the case",
        "--partners PARTNERS client companies",
        "--never-shared NEVER_SHARED students who never consent",
        "--keep keep the demo topics",
    ):
        assert words in out
