import json

from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def test_models_json_lists_parameter_counts():
    result = runner.invoke(app, ["models", "attnet_xxs", "attnet_t1", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]  # one object per line, as --help says
    assert [row["name"] for row in rows] == ["attnet_xxs", "attnet_t1"]
    assert rows[1]["params"] == 13714900 and rows[1]["input_size"] == [288, 144] and rows[1]["note"] is None
    assert rows[1]["weights"] == "missing: weights/AttNet_T1.pth"


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


def test_data_make_demo_then_check_json(tmp_path):
    root = tmp_path / "vcm"
    made = runner.invoke(app, ["data", "make-demo", "--layout", "vcm", "--out", str(root), "--ids", "6"])
    assert made.exit_code == 0, made.output
    result = runner.invoke(app, ["data", "check", "--dataset", "vcm", "--root", str(root), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["dataset"] == "vcm" and set(stats) == {"dataset", "train", "query", "gallery"}
    assert set(stats["train"]["ir"]) == {"ids", "tracklets", "frames", "cameras"}
    assert stats["query"]["ir"]["tracklets"] == 4  # 2 test ids x 2 long infrared tracklets
    again = runner.invoke(app, ["data", "make-demo", "--layout", "vcm", "--out", str(root)])
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_data_check_lists_every_problem_and_exits_2(tmp_path):
    root = tmp_path / "llcm"
    runner.invoke(app, ["data", "make-demo", "--layout", "llcm", "--out", str(root), "--ids", "6"])
    (root / "idx/test_id.txt").write_text("5,6,77\n")
    corrupt = sorted((root / "test_vis").rglob("*.jpg"))[0]
    corrupt.write_bytes(b"not an image")
    lines = (root / "idx/train_nir.txt").read_text().splitlines()
    (root / "idx/train_nir.txt").write_text("\n".join(["broken line here"] + lines[1:]) + "\n")
    result = runner.invoke(app, ["data", "check", "--dataset", "llcm", "--root", str(root)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "4 problems in dataset" in result.stderr  # the unknown identity is missing from both modalities
    assert "identity 0077 has no images under test_vis/" in result.stderr
    assert "identity 0077 has no images under test_nir/" in result.stderr
    assert f"{corrupt}: unreadable image" in result.stderr
    assert "train_nir.txt:1: expected 'relative/path label'" in result.stderr


def test_data_check_unknown_dataset():
    result = runner.invoke(app, ["data", "check", "--dataset", "market1501", "--root", "."])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "error: Invalid value for '--dataset' / '-d': 'market1501' is not one of 'llcm', 'vcm', 'sysu', 'regdb'" \
        in result.stderr


def test_the_command_line_starts_without_torch_timm_or_faiss():
    import subprocess
    import sys

    code = ("import sys, cli; heavy = [m for m in ('torch', 'timm', 'faiss', 'albumentations', 'cv2') "
            "if m in sys.modules]; print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=__import__("pathlib").Path(__file__).parents[1])
    assert result.stdout.strip() == "[]"
