"""Progress lines: the per-epoch line, finding progress again in a log stream, offline Data Docs pages."""
from __future__ import annotations

import logging

from unisem.progress import progress_text, say
from unisem.quality.expectations import offline_data_docs
from unisem.train.progress import epoch_line


def test_epoch_line_reads_like_the_spec():
    record = {"epoch": 7, "loss": 3.1234, "valid/NDCG@10": 0.52149}
    assert epoch_line(record, 20, "NDCG@10", True) == "epoch 7/20 loss 3.12 valid NDCG@10 0.521 (best)"
    assert epoch_line(record, 20, "NDCG@10", False) == "epoch 7/20 loss 3.12 valid NDCG@10 0.521"
    assert epoch_line({"epoch": 1, "loss": 1.0}, 2, "HR@10", False).endswith("valid HR@10 n/a")


def test_progress_text_is_found_in_decorated_log_lines():
    line = ("2026-03-01T00:00:05.1+0000 [info     ] epoch 7/20 loss 3.12 valid NDCG@10 0.521 (best) "
            "[unisem.train.loop] loc=loop.py:160\n")
    assert progress_text(line) == "epoch 7/20 loss 3.12 valid NDCG@10 0.521 (best)"
    assert progress_text("(RayTrainWorker pid=12) epoch 1/2 loss 9.00 valid NDCG@10 0.010") == (
        "epoch 1/2 loss 9.00 valid NDCG@10 0.010")
    assert progress_text("[info] quality gate: warn: brand_share = 0.4, below the minimum 0.5") == (
        "quality gate: warn: brand_share = 0.4, below the minimum 0.5")
    assert progress_text("INFO - Task started") is None


def test_say_logs_when_a_handler_listens_and_prints_otherwise(caplog, capsys):
    with caplog.at_level(logging.INFO, logger="unisem.test"):
        say("unisem.test", "epoch 1/1 loss 1.00 valid NDCG@10 0.100")
    assert "epoch 1/1" in caplog.text and capsys.readouterr().err == ""
    logging.getLogger("unisem.quiet").propagate = False
    try:
        say("unisem.quiet", "epoch 2/2 loss 1.00 valid NDCG@10 0.100")
    finally:
        logging.getLogger("unisem.quiet").propagate = True
    assert "epoch 2/2" in capsys.readouterr().err


def test_offline_data_docs_strips_network_assets(tmp_path):
    page = tmp_path / "index.html"
    page.write_text('<html><head><link rel="stylesheet" href="https://cdnjs.cloudflare.com/x.css">'
                    '<script src="//cdn.example.org/jquery.js"></script><link rel="icon" href="favicon.ico">'
                    '</head><body><table><tr><td>ok</td></tr></table></body></html>')
    (tmp_path / "local.html").write_text("<html><head></head><body>plain</body></html>")
    assert offline_data_docs(tmp_path) == 1
    text = page.read_text()
    assert "cdn" not in text and "https://" not in text and 'href="favicon.ico"' in text and "<style>" in text
    assert "<td>ok</td>" in text
