"""The scenario-file format that the core tests are written in."""

import pytest

from keychain.testing import datadriven


def test_cases_parse_into_command_arguments_input_and_expected_output():
    text = "# a comment\nput a v=1 peers=n1,n2\nextra input\n----\nok\n\nget a\n----\n1\n"
    first, second = datadriven.parse(text)
    assert (first.command, first.words, first.args) == ("put", ["a"], {"v": "1", "peers": "n1,n2"})
    assert first.input == "extra input" and first.expected == "ok"
    assert first.list_arg("peers") == ["n1", "n2"] and first.int_arg("v") == 1
    assert (second.command, second.expected, second.line) == ("get", "1", 7)


def test_doubled_separator_allows_blank_lines_in_the_expected_output():
    text = "status\n----\n----\nline one\n\nline three\n----\n----\n"
    (case,) = datadriven.parse(text)
    assert case.expected == "line one\n\nline three"


def test_a_wrong_output_fails_with_both_texts(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("echo hi\n----\nhello\n")
    with pytest.raises(AssertionError, match="expected\nhello\n--- actual\nhi"):
        datadriven.run_file(path, lambda case: case.words[0])


def test_rewrite_mode_records_the_actual_outputs(tmp_path, monkeypatch):
    path = tmp_path / "s.txt"
    path.write_text("# header\n\necho hi\n----\nstale\n\necho two words\n----\n")
    monkeypatch.setenv("KEYCHAIN_REWRITE", "1")
    datadriven.run_file(path, lambda case: "\n\n".join(case.words))
    monkeypatch.delenv("KEYCHAIN_REWRITE")
    datadriven.run_file(path, lambda case: "\n\n".join(case.words))
    assert path.read_text().startswith("# header\n\necho hi\n----\nhi\n")


def test_a_case_without_separator_is_a_clear_error():
    with pytest.raises(datadriven.ScenarioError, match="no ----"):
        datadriven.parse("put a\n\n")
