"""How the CLI reads ages, moments and sizes (cli.when): good values, and one clear line
naming the option for a bad one."""

from __future__ import annotations

import pytest
import typer

from taskfleet.cli.when import age_seconds, kept_for, moment, output_size


def test_ages_moments_and_sizes() -> None:
    assert age_seconds("90d", "--keep-history") == 90 * 86400
    assert age_seconds("30m", "--x") == 1800 and age_seconds("2w", "--x") == 14 * 86400
    assert kept_for("0", "--keep-history") == 0 and kept_for("never", "--keep-audit") == 0
    assert moment("2h", "--since", now=10_000.0) == 10_000.0 - 7200
    assert moment("2026-11-25T08:00", "--since") == 1795593600.0  # UTC unless it says
    assert moment("2026-11-25T08:00+01:00", "--since") == 1795593600.0 - 3600
    assert output_size("1MiB", "--max-output") == 1024 * 1024
    assert output_size("512KiB", "--max-output") == 512 * 1024


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: age_seconds("soon", "--keep-history"), "--keep-history 'soon'"),
        (lambda: kept_for("5m", "--keep-history"), "at least an hour"),
        (lambda: moment("yesterday-ish", "--since"), "--since 'yesterday-ish'"),
        (lambda: output_size("9MiB", "--max-output"), "1KiB to 4MiB"),
        (lambda: output_size("lots", "--max-output"), "--max-output 'lots'"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_option(
    call: object, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit):
        call()  # type: ignore[operator]
    assert words in capsys.readouterr().err
