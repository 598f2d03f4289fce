import pytest
from reference_sampling import reference_gallery

from reid.data import LLCM, DatasetError
from reid.data.llcm import IR_CAMERAS, VIS_CAMERAS


def llcm_reference_gallery(root, trial, modality):
    cameras = [f"test_vis/cam{c}" for c in VIS_CAMERAS] if modality == "vis" else \
        [f"test_nir/cam{c}" for c in IR_CAMERAS]
    return reference_gallery(root, trial, cameras, (root / "idx/test_id.txt").read_text().split(","))


def test_counts_labels_and_cameras(synthetic):
    root = synthetic("llcm")  # 10 identities: 6 train, 4 test
    dataset = LLCM(root)
    train = dataset.train()
    listed = {int(line.split()[1]) for name in ("train_vis", "train_nir")
              for line in (root / f"idx/{name}.txt").read_text().splitlines()}
    assert sorted({s.pid for s in train}) == sorted(listed) == list(range(1, 7))  # the lists' own labels
    assert sum(s.modality == "vis" for s in train) == 24 and sum(s.modality == "ir" for s in train) == 24
    for pid in range(1, 7):  # the two lists' labels are one identity space
        assert {s.modality for s in train if s.pid == pid} == {"vis", "ir"}
    assert all(f"cam{s.camid}" in s.path for s in train)
    assert dataset.test_ids == [7, 8, 9, 10]


@pytest.mark.parametrize("direction", ["ir2vis", "vis2ir"])
@pytest.mark.parametrize("trial", [0, 3, 9])
def test_gallery_is_the_reference_draw(synthetic, direction, trial):
    root = synthetic("llcm")
    split = LLCM(root).test_split(direction, trial)
    gallery_modality = "vis" if direction == "ir2vis" else "ir"
    assert [s.path for s in split.gallery] == llcm_reference_gallery(root, trial, gallery_modality)
    assert {s.modality for s in split.gallery} == {gallery_modality}
    assert len(split.query) == 24 and {s.modality for s in split.query} == {"ir" if direction == "ir2vis" else "vis"}
    for sample in split.gallery + split.query:
        assert f"cam{sample.camid}/{sample.pid:04d}/" in sample.path


def test_trials_differ_and_repeat(synthetic):
    dataset = LLCM(synthetic("llcm"))
    galleries = [[s.path for s in dataset.test_split("ir2vis", t).gallery] for t in range(10)]
    assert len({tuple(g) for g in galleries}) > 1
    assert galleries[4] == [s.path for s in dataset.test_split("ir2vis", 4).gallery]
    with pytest.raises(DatasetError, match="trials 0..9"):
        dataset.test_split("ir2vis", 10)


def test_every_problem_is_reported(damaged):
    root = damaged("llcm")
    lines = (root / "idx/train_vis.txt").read_text().splitlines()
    lines[2] = "train_vis/cam1/0001/not_there.jpg 1"
    lines[5] = "only-a-path.jpg"
    (root / "idx/train_vis.txt").write_text("\n".join(lines) + "\n")
    (root / "idx/train_nir.txt").unlink()
    empty = root / "test_vis/cam1/0008"
    empty.mkdir(parents=True, exist_ok=True)
    for image in empty.iterdir():
        image.unlink()
    with pytest.raises(DatasetError) as error:
        LLCM(root)
    problems = error.value.problems
    assert any("idx/train_vis.txt:3: missing image" in p and "not_there.jpg" in p for p in problems)
    assert any("idx/train_vis.txt:6: expected 'relative/path label'" in p for p in problems)
    assert any("idx/train_nir.txt: missing index file" in p for p in problems)
    assert any("test_vis/cam1/0008: empty identity folder" in p for p in problems)
    assert len(problems) == 4


def test_identity_without_images_and_corrupt_image(damaged):
    root = damaged("llcm")
    (root / "idx/test_id.txt").write_text("7,8,9,10,42\n")
    with pytest.raises(DatasetError, match="identity 0042 has no images under test_vis/"):
        LLCM(root)
    (root / "idx/test_id.txt").write_text("7,8,9,10\n")
    victim = next((root / "test_nir").rglob("*.jpg"))
    victim.write_bytes(victim.read_bytes()[:200])  # truncated
    dataset = LLCM(root)
    with pytest.raises(DatasetError, match=f"{victim}: unreadable image"):
        dataset.verify_images()


def test_missing_root():
    with pytest.raises(DatasetError, match="no such directory"):
        LLCM("/nonexistent/LLCM")


def test_paths_outside_the_root_and_repeated_lines_are_problems(damaged):
    root = damaged("llcm")
    lines = (root / "idx/train_vis.txt").read_text().splitlines()
    outside = root.parent / "elsewhere.jpg"
    outside.write_bytes((root / lines[0].split()[0]).read_bytes())
    lines += [lines[0], "../elsewhere.jpg 1", f"{outside} 1"]
    (root / "idx/train_vis.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as error:
        LLCM(root)
    problems = error.value.problems
    count = len(lines)
    assert f"{root / 'idx/train_vis.txt'}:{count - 2}: {lines[0].split()[0]} is listed again (first on line 1)" \
        in problems
    assert f"{root / 'idx/train_vis.txt'}:{count - 1}: ../elsewhere.jpg is outside the dataset root " \
           f"(paths are relative to {root})" in problems
    assert any(p.startswith(f"{root / 'idx/train_vis.txt'}:{count}: {outside} is outside") for p in problems)
    assert len(problems) == 3
