"""Placeholders in scripts: rendered on the agent, checked when the task is saved."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskfleet.protocol import templates
from taskfleet.protocol.templates import SECRET_MASK, TemplateError, Values

VALUES = Values(
    computer_name="web-01",
    computer_ip="10.1.2.3",
    run_id=42,
    params={"greeting": "hello", "n": "3"},
    facts={"os.version": "12"},
)


def test_every_scope_renders() -> None:
    text = "{{computer.name}} {{ computer.ip }} {{run.id}} {{param.greeting}} {{fact.os.version}}"
    assert templates.render(text, VALUES) == "web-01 10.1.2.3 42 hello 12"


def test_a_literal_double_brace_is_written_quoted() -> None:
    assert templates.render("awk '{{\"{{\"}}print}}'", VALUES) == "awk '{{print}}'"


def test_a_missing_fact_or_parameter_renders_empty() -> None:
    assert templates.render("[{{fact.nope}}][{{param.other}}]", Values()) == "[][]"


@pytest.mark.parametrize(
    "text",
    ["{{computer.nme}}", "{{run.number}}", "{{ nonsense }}", "{{user.name}}", "{{param.}}"],
)
def test_unknown_placeholders_are_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        templates.check(text, ["greeting"])


def test_an_undeclared_parameter_is_refused_and_declared_ones_listed() -> None:
    with pytest.raises(TemplateError, match=r"param\.X.*declared: greeting"):
        templates.check("echo {{param.X}}", ["greeting"])
    templates.check("echo {{param.greeting}} {{fact.anything}}", ["greeting"])


def test_masking_replaces_every_secret_longest_first() -> None:
    out = templates.mask("pw=abc123 short=abc again abc123", ["abc", "abc123", ""])
    assert out == f"pw={SECRET_MASK} short={SECRET_MASK} again {SECRET_MASK}"


@given(st.text())
def test_escaped_text_renders_back_to_itself(text: str) -> None:
    escaped = templates.escape(text)
    templates.check(escaped, [])
    assert templates.render(escaped, VALUES) == text


@given(st.text(alphabet=st.characters(blacklist_characters="{}")), st.text(min_size=1))
def test_rendering_leaves_text_without_braces_alone_and_fills_params(text: str, value: str) -> None:
    rendered = templates.render(text + "{{param.p}}" + text, Values(params={"p": value}))
    assert rendered == text + value + text


@given(st.text(min_size=1), st.text())
def test_a_masked_output_never_holds_the_secret(secret: str, output: str) -> None:
    masked = templates.mask(output + secret + output, [secret])
    assert secret not in masked or secret in SECRET_MASK


def test_output_cut_inside_a_secret_masks_its_beginning() -> None:
    assert templates.mask("token=hunt", ["hunter2"], cut=True) == f"token={SECRET_MASK}"
    assert templates.mask("token=hunt", ["hunter2"]) == "token=hunt"


@given(st.text(), st.text(min_size=2), st.integers(min_value=1))
def test_a_cut_output_never_ends_with_part_of_a_secret(before: str, secret: str, keep: int) -> None:
    cut = (before + secret)[: len(before) + min(keep, len(secret) - 1)]
    masked = templates.mask(cut, [secret], cut=True)
    assert not any(
        masked.endswith(secret[:n]) for n in range(2, len(secret)) if secret[:n] not in SECRET_MASK
    )
