import json

from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def test_models_json_lists_parameter_counts():
    result = runner.invoke(app, ["models", "attnet_xxs", "attnet_t1", "--json"])
    assert result.exit_code == 0, result.output
    decoder, text, rows = json.JSONDecoder(), result.stdout.strip(), []
    while text:
        row, end = decoder.raw_decode(text)
        rows.append(row)
        text = text[end:].strip()
    assert [row["name"] for row in rows] == ["attnet_xxs", "attnet_t1"]
    assert rows[1]["params"] == 13714900 and rows[1]["input_size"] == [288, 144] and rows[1]["note"] is None


def test_models_table():
    result = runner.invoke(app, ["models", "attnet_xxs", "--size", "256x128"])
    assert result.exit_code == 0
    assert "attnet_xxs" in result.stdout and "2.854" in result.stdout and "runs at 256x128" in result.stdout


def test_unknown_backbone_exits_2_with_one_line():
    result = runner.invoke(app, ["models", "resnet5O"])
    assert result.exit_code == 2
    assert "error: unknown backbone 'resnet5O'" in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_bad_size_names_the_option():
    result = runner.invoke(app, ["models", "attnet_xxs", "--size", "big"])
    assert result.exit_code == 2 and "--size must look like HEIGHTxWIDTH" in result.stderr


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("reid ")
