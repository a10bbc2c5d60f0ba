"""`make demo` runs the whole loop headless: it must go on past saving, to serving and answering a request."""
from nbml import demo


def test_demo_runs_the_whole_loop(tmp_path, capsys):
    accuracy = demo.main(["--arch", "test_resnet", "--epochs", "1", "--folder", str(tmp_path / "demo")])
    out = capsys.readouterr().out
    assert 0 <= accuracy <= 1
    for title in ("ingest", "train", "label next", "predict one file", "export, serve"):
        assert title in out
    answer = out.split("answered: ", 1)[1].splitlines()[0]
    assert '"label"' in answer and (tmp_path / "demo" / "digits-export" / "model.onnx").exists()
