from pathlib import Path

import pytest

from reid.data import VCMHITSZ, DatasetError
from reid.data.vcm import MIN_SEQ_LEN, frame_path


def test_frame_names_map_to_paths():
    assert frame_path(Path("R"), "Test", "0001M2D3T1F1.jpg") == "R/Test/0001/rgb/D3/1.jpg"
    assert frame_path(Path("R"), "Train", "0123M1D12T4F77.jpg") == "R/Train/0123/ir/D12/77.jpg"
    assert frame_path(Path("R"), "Train", "garbage.jpg") is None


def test_tracklets_and_min_seq_len(synthetic):
    root = synthetic("vcm")  # 10 ids: 6 train, 4 test; per id and modality 2 long tracklets and 1 short one
    dataset = VCMHITSZ(root)
    train = dataset.train()
    assert len(train) == 6 * 2 * 2 and sorted({s.pid for s in train}) == list(range(1, 7))  # the dataset's ids
    assert all(s.is_tracklet and len(s.frames) >= MIN_SEQ_LEN for s in train)
    tracks = (root / "info/track_train_info.txt").read_text().split("\n")
    assert sum(1 for t in tracks if t and int(t.split()[2]) - int(t.split()[1]) + 1 < MIN_SEQ_LEN) == 12


def test_query_idx_and_directions(synthetic):
    root = synthetic("vcm")
    dataset = VCMHITSZ(root)
    ir2vis, vis2ir = dataset.test_split("ir2vis"), dataset.test_split("vis2ir")
    assert {s.modality for s in ir2vis.query} == {"ir"} and {s.modality for s in ir2vis.gallery} == {"vis"}
    assert len(ir2vis.query) == len(ir2vis.gallery) == 4 * 2
    assert [s.path for s in vis2ir.query] == [s.path for s in ir2vis.gallery]
    tracks = (root / "info/track_test_info.txt").read_text().split("\n")
    query_index = [int(i) - 1 for i in (root / "info/query_IDX.txt").read_text().split()]
    first = ir2vis.query[0]
    line = tracks[query_index[0]].split()
    assert first.pid == int(line[3]) and first.camid == int(line[4]) and len(first.frames) == int(line[2]) - int(
        line[1]) + 1
    with pytest.raises(DatasetError, match="trials 0..0"):
        dataset.test_split("ir2vis", 1)


def test_bad_track_lines_and_missing_frames(damaged):
    root = damaged("vcm")
    lines = (root / "info/track_test_info.txt").read_text().splitlines()
    lines[0] = "1 5 2 7"  # malformed
    lines[1] = "3 1 20 7 1"  # modality 3
    (root / "info/track_test_info.txt").write_text("\n".join(lines) + "\n")
    frame = next((root / "Train").rglob("*.jpg"))
    frame.unlink()
    (root / "info/query_IDX.txt").write_text("1 2 999\n")
    with pytest.raises(DatasetError) as error:
        VCMHITSZ(root)
    text = str(error.value)
    assert "track_test_info.txt:1: expected 'modality start end pid camid'" in text
    assert "track_test_info.txt:2: modality must be 1 or 2" in text
    assert f"missing frame {frame}" in text
    assert "query_IDX.txt:1: '999' is not a tracklet number" in text
