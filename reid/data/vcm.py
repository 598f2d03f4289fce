"""VCM-HITSZ (video tracklets; 12 cameras; infrared and visible)."""
from __future__ import annotations

import re
from pathlib import Path

from reid.data.base import ReIDDataset, read_index_lines
from reid.data.protocols import VCM
from reid.data.samples import Direction, EvalSplit, Sample
from reid.data.synthetic import World, save_image, split_ids
from reid.io import regular_file

MIN_SEQ_LEN = 12
_FRAME_NAME = re.compile(r"^(\d+)M([12])D(\d+)T(\d+)F(.+)$")


def frame_path(root: Path, split: str, name: str) -> str | None:
    """"0001M2D3T1F1.jpg" -> {root}/{split}/0001/rgb/D3/1.jpg (M1 = infrared "ir", M2 = visible "rgb")."""
    match = _FRAME_NAME.match(name)
    if not match:
        return None
    pid, modality, camera, _, frame = match.groups()
    return str(root / split / pid / ("ir" if modality == "1" else "rgb") / f"D{camera}" / frame)


class VCMHITSZ(ReIDDataset):
    """VCM-HITSZ: ``Train/`` and ``Test/`` frames, listed by ``info/*_name.txt`` and grouped into tracklets by
    ``info/track_*_info.txt`` ("modality start end pid camid", 1-based inclusive lines of the name list).

    Tracklets shorter than 12 frames are dropped. ir2vis (default): query = the tracklets listed (1-based) in
    ``info/query_IDX.txt``, gallery = all other test tracklets; vis2ir swaps the two. One trial.
    """

    name = "vcm"
    title = "VCM-HITSZ"
    protocol = VCM
    num_trials = 1
    tracklets = True
    synthetic_ids = 40

    def _parse(self, problems: list[str]) -> None:
        self._train = [t for t in self._tracklets("Train", "train", problems) if len(t.frames) >= MIN_SEQ_LEN]
        test = self._tracklets("Test", "test", problems)
        query_lines = read_index_lines(self.root, "info/query_IDX.txt", problems) or []
        query_index: set[int] = set()
        for number, line in query_lines:
            for token in line.split():
                if not token.isdigit() or not 1 <= int(token) <= len(test):
                    problems.append(f"{self.root / 'info/query_IDX.txt'}:{number}: {token!r} is not a tracklet "
                                    f"number in 1..{len(test)}")
                    continue
                query_index.add(int(token) - 1)
        # query_IDX indexes track_test_info before the length filter, as in the reference code
        self._query = [t for i, t in enumerate(test) if i in query_index and len(t.frames) >= MIN_SEQ_LEN]
        self._others = [t for i, t in enumerate(test) if i not in query_index and len(t.frames) >= MIN_SEQ_LEN]

    def _tracklets(self, folder: str, split: str, problems: list[str]) -> list[Sample]:
        name_file, track_file = f"info/{split}_name.txt", f"info/track_{split}_info.txt"
        names = [line for _, line in read_index_lines(self.root, name_file, problems) or []]
        tracks = read_index_lines(self.root, track_file, problems) or []
        tracklets = []
        for number, line in tracks:
            fields = line.split()
            where = f"{self.root / track_file}:{number}"
            if len(fields) != 5 or not all(re.fullmatch(r"\d+", f) for f in fields):
                problems.append(f"{where}: expected 'modality start end pid camid', got {line!r}")
                continue
            modality, start, end, pid, camid = map(int, fields)
            if modality not in (1, 2) or not 1 <= start <= end <= len(names):
                problems.append(f"{where}: modality must be 1 or 2 and 1 <= start <= end <= {len(names)}, "
                                f"got {line!r}")
                continue
            frames = []
            for offset, name in enumerate(names[start - 1:end], start):
                path = frame_path(self.root, folder, name)
                if path is None:
                    problems.append(f"{self.root / name_file}:{offset}: malformed frame name {name!r}")
                elif not regular_file(path):
                    problems.append(f"{self.root / name_file}:{offset}: missing frame {path}")
                else:
                    frames.append(path)
            if len(frames) == end - start + 1:
                tracklets.append(Sample(tuple(frames), pid, camid, "ir" if modality == 1 else "vis"))
        return tracklets

    def train(self, trial: int = 0) -> list[Sample]:
        return list(self._train)

    def test_split(self, direction: Direction = "ir2vis", trial: int = 0) -> EvalSplit:
        self.check_direction_and_trial(direction, trial)
        if direction == "ir2vis":
            return EvalSplit(list(self._query), list(self._others), direction, trial)
        return EvalSplit(list(self._others), list(self._query), direction, trial)

    @classmethod
    def write_synthetic(cls, out: Path, num_ids: int, seed: int) -> None:
        world = World(seed, num_ids, 12)
        rng = world.rng
        train_ids, test_ids = split_ids(num_ids)
        for split, folder, ids in (("train", "Train", train_ids), ("test", "Test", test_ids)):
            names, tracks = [], []
            for pid in ids:
                frame_counter: dict[tuple[str, int], int] = {}
                for modality_code, modality in ((1, "ir"), (2, "vis")):
                    for track in range(1, 4):
                        camera = int(rng.integers(1, 13))
                        # the third tracklet is too short, so the min_seq_len filter has work to do
                        length = int(rng.integers(13, 20)) if track < 3 else int(rng.integers(6, 11))
                        start = len(names) + 1
                        phase = rng.uniform()
                        for frame in range(length):
                            key = (modality, camera)
                            frame_counter[key] = frame_counter.get(key, 0) + 1
                            name = f"{pid:04d}M{modality_code}D{camera}T{track}F{frame_counter[key]}.jpg"
                            path = frame_path(out, folder, name)
                            save_image(world.image(pid - 1, camera, modality, phase=(phase + frame / 8) % 1),
                                       Path(path), modality)
                            names.append(name)
                        tracks.append(f"{modality_code} {start} {len(names)} {pid} {camera}")
            (out / "info").mkdir(parents=True, exist_ok=True)
            (out / f"info/{split}_name.txt").write_text("\n".join(names) + "\n")
            (out / f"info/track_{split}_info.txt").write_text("\n".join(tracks) + "\n")
            if split == "test":  # the query tracklets are the infrared ones
                query = [str(i) for i, line in enumerate(tracks, 1) if line.startswith("1 ")]
                (out / "info/query_IDX.txt").write_text(" ".join(query) + "\n")
