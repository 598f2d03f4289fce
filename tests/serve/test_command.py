"""``reid serve`` on the command line: safe defaults, one-line refusals, and a live server that answers and stops."""
import signal
import sys

import httpx
import pytest
from typer.testing import CliRunner

from reid.cli import app
from reid.errors import ReidError
from reid.serve import TOKEN_VARIABLE, check_exposure, is_loopback, read_token

runner = CliRunner()


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.8.9.1", True), ("localhost", True),
                                            ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("::", False),
                                            ("192.168.1.4", False), ("my-host.example", False)])
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_the_token_comes_from_the_file_then_the_environment(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-s3cret-s3cret\nignored second line\n")
    assert read_token(token_file, {TOKEN_VARIABLE: "from-the-environment-123"}) == "s3cret-s3cret-s3cret"
    assert read_token(None, {TOKEN_VARIABLE: "from-the-environment-123"}) == "from-the-environment-123"
    assert read_token(None, {}) is None
    with pytest.raises(ReidError, match="at least 16 characters"):
        read_token(None, {TOKEN_VARIABLE: "short"})
    with pytest.raises(ReidError, match=r"--token-file .*nothing: no such file"):
        read_token(tmp_path / "nothing", {})


def test_another_address_without_a_token_is_refused():
    check_exposure("127.0.0.1", None)
    check_exposure("0.0.0.0", "a-token-that-is-long-enough")
    with pytest.raises(ReidError, match="--host 0.0.0.0 listens beyond this machine"):
        check_exposure("0.0.0.0", None)


def serve(*arguments):
    return runner.invoke(app, ["serve", *arguments], env={TOKEN_VARIABLE: ""})


def test_refusals_are_one_line_with_exit_code_2(served, tmp_path):
    _, checkpoint, gallery, report = served
    model = ["--checkpoint", str(checkpoint), "--device", "cpu"]
    short = tmp_path / "short"
    short.write_text("abc\n")
    old = tmp_path / "old.json"
    old.write_text('{"dataset": "LLCM", "results": {}}')
    cases = [
        (["--index", str(tmp_path / "nowhere"), *model], "no such gallery directory"),
        (["--index", str(tmp_path), *model], "not a gallery (no manifest.json)"),
        (["--index", str(gallery), *model, "--host", "0.0.0.0"], "--host 0.0.0.0 listens beyond this machine"),
        (["--index", str(gallery), *model, "--token-file", str(tmp_path / "missing")], "no such file"),
        (["--index", str(gallery), *model, "--token-file", str(short)], "at least 16 characters"),
        (["--index", str(gallery), *model, "--evaluation", str(tmp_path / "gone.json")], "gone.json: no such file"),
        (["--index", str(gallery), *model, "--evaluation", str(old)], "no per-query records"),
        (["--index", str(gallery), "--backbone", "resnet18", "--device", "cpu"], "does not match the gallery"),
    ]
    for arguments, message in cases:
        result = serve(*arguments)
        assert result.exit_code == 2, (arguments, result.output)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.output


def test_without_the_serve_extra_the_answer_is_how_to_install_it(served, monkeypatch):
    _, checkpoint, gallery, _ = served
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now fails
    result = serve("--index", str(gallery), "--checkpoint", str(checkpoint), "--device", "cpu")
    assert result.exit_code == 2 and "pip install 'vireid[serve]'" in result.stderr


def test_a_live_server_answers_on_loopback_and_stops_on_ctrl_c(served, start_serve):
    _, checkpoint, gallery, report = served
    server, base = start_serve(["--index", str(gallery), "--checkpoint", str(checkpoint), "--device", "cpu",
                                "--evaluation", str(report)], {TOKEN_VARIABLE: ""})
    try:
        info = httpx.get(f"{base}/api/v1/gallery").json()
        assert info["items"] > 0 and info["evaluations"][0]["name"] == "report.json"
        answer = httpx.post(f"{base}/api/v1/search", data={"item_id": "0", "top_k": "3"}).json()
        hits = [hit["item_id"] for hit in answer["results"][0]["hits"]]
        assert len(hits) == 3 and 0 not in hits  # an item's search never returns the item itself
        refused = httpx.post(f"{base}/api/v1/items", files=[("images", ("a.png", b"x"))])
        assert refused.status_code == 403  # no token: read-only
        assert "reid serve" in httpx.get(f"{base}/").text
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    assert server.returncode in (0, 130), err
    assert f"on {base}/ (read-only" in out.replace("\n", " ")
