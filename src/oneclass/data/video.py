"""Video: clips of grey frames with optional frame labels and pixel masks, and their readers.

Layouts read:
- UCSD Ped2 as video-anomaly code commonly ships it: `ped2/training/frames/NN/FFF.jpg`,
  `ped2/testing/frames/NN/FFF.jpg`, frame ground truth in `ped2.mat` (variable `gt`) or
  `UCSDped2.m`, pixel masks `ped2/testing/pixel_masks/NN/FFF.png`;
- the dataset's original distribution: `UCSDped2/Train/Train001/001.tif`,
  `UCSDped2/Test/Test001/001.tif`, pixel masks `UCSDped2/Test/Test001_gt/001.bmp`, `UCSDped2.m`;
- a user's footage: a folder of frames (one clip), a folder of frame folders (one clip each), a
  video file (`.mp4`, `.avi`, … decoded by PyAV, the `video` extra) or a folder of video files.

Frames are held as uint8 T×H×W (grey: all three seed papers work on grey Ped2 frames)."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import DataError
from .folder import IMAGE_SUFFIXES, is_image_name, max_image_pixels, open_image

CHUNK_FRAMES = 256  # footage is read this many frames at a time (score, fit on a user's footage)
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv"}


@dataclass
class Clip:
    """One video: frames (uint8 T×H×W), optional per-frame labels (1 = abnormal) and pixel
    masks (bool T×H×W, True = abnormal pixel) where the dataset has them."""

    name: str
    frames: np.ndarray
    labels: np.ndarray | None = None
    masks: np.ndarray | None = None
    source: str = ""

    def __post_init__(self) -> None:
        f = self.frames
        if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 3:
            raise DataError(f"clip {self.name}: frames must be a uint8 T×H×W array, got "
                            f"{getattr(f, 'dtype', type(f).__name__)} {getattr(f, 'shape', '')}")
        if len(f) == 0:
            raise DataError(f"clip {self.name}: no frames")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            if self.labels.shape != (len(f),):
                raise DataError(f"clip {self.name}: {len(f)} frames but {self.labels.shape} labels")
        if self.masks is not None and self.masks.shape != f.shape:
            raise DataError(f"clip {self.name}: pixel masks {self.masks.shape} do not match frames {f.shape}")

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def frame_shape(self) -> tuple[int, int]:
        return tuple(self.frames.shape[1:])

    def chunks(self, size: int | None = None) -> Iterator[np.ndarray]:
        """The frames as consecutive chunks (one, the whole clip, unless `size` is given)."""
        step = size or len(self.frames)
        return (self.frames[a:a + step] for a in range(0, len(self.frames), step))


@dataclass
class VideoData:
    """A set of clips (a dataset split or a user's footage)."""

    clips: list[Clip]
    source: str = ""
    fps: float | None = None
    notes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.clips:
            raise DataError(f"{self.source or 'video data'}: no clips")

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def n_frames(self) -> int:
        return sum(len(c) for c in self.clips)

    @property
    def labelled(self) -> bool:
        return all(c.labels is not None for c in self.clips)


# ---- frames ----------------------------------------------------------------------------------
def natural_key(path: Path) -> tuple:
    """Sort `2.tif` before `10.tif`: numbers in a name compare as numbers."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name))


def list_frames(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and is_image_name(p)), key=natural_key)


def _read_grey(path: Path) -> np.ndarray:
    return np.asarray(open_image(path, "L"), dtype=np.uint8)


def iter_frame_folder(folder: str | Path, chunk: int = CHUNK_FRAMES) -> Iterator[np.ndarray]:
    """A folder of frame images (natural order) as uint8 n×H×W arrays of up to `chunk` frames;
    every frame must share one size."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"missing frame folder {folder}")
    files = list_frames(folder)
    if not files:
        raise DataError(f"no frame images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    first = None
    with ThreadPoolExecutor(max_workers=8) as pool:
        for a in range(0, len(files), chunk):
            names = files[a:a + chunk]
            frames = list(pool.map(_read_grey, names))
            first = first or (files[0], frames[0].shape)
            for path, f in zip(names, frames):
                if f.shape != first[1]:
                    raise DataError(f"frame {path} is {f.shape[1]}×{f.shape[0]} but {first[0].name} is "
                                    f"{first[1][1]}×{first[1][0]}: a clip's frames must share one size")
            yield np.stack(frames)


def read_frame_folder(folder: str | Path) -> np.ndarray:
    """A folder of frame images (natural order) → uint8 T×H×W; every frame must share one size."""
    return np.concatenate(list(iter_frame_folder(folder)))


def _open_video(path: Path) -> tuple[Any, Any, float | None, int | None]:
    """(container, its first video stream, frames per second, the frame count its header states or
    implies), the frame size checked against the pixel limit; the caller closes the container."""
    if not path.is_file():
        raise DataError(f"no video file at {path}")
    try:
        import av
    except ImportError as e:
        raise DataError(f"reading {path.name} needs PyAV: pip install 'oneclass[video]'") from e
    try:
        container = av.open(str(path))
    except Exception as e:  # PyAV raises its own error types for every kind of broken file
        raise DataError(f"cannot decode video {path}: {type(e).__name__}: {e}") from e
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: no video stream")
    stream = container.streams.video[0]
    w, h = stream.codec_context.width, stream.codec_context.height
    if w * h > max_image_pixels():
        container.close()
        raise DataError(f"video {path} has {w}×{h} frames, over the limit of {max_image_pixels():,} "
                        "pixels (set ONECLASS_MAX_IMAGE_PIXELS to allow larger frames)")
    fps = float(stream.average_rate) if stream.average_rate else None
    expected = stream.frames or (round(container.duration / 1e6 * fps) if container.duration and fps else None)
    return container, stream, fps, expected


def video_header(path: str | Path) -> tuple[float | None, int | None]:
    """A video file's frame rate and frame count from its header (None where it states none)."""
    container, _, fps, expected = _open_video(Path(path))
    container.close()
    return fps, expected


def iter_video_file(path: str | Path, chunk: int = CHUNK_FRAMES) -> Iterator[np.ndarray]:
    """A video file decoded by PyAV as uint8 n×H×W grey arrays of up to `chunk` frames: an hour of
    footage is read a chunk at a time, never held whole."""
    path = Path(path)
    container, stream, _, expected = _open_video(path)
    from av.video.reformatter import VideoReformatter
    gray = VideoReformatter()  # one per file: `to_ndarray(format="gray")` makes one per frame, 20× slower
    done, frames = 0, []
    try:
        decoded = container.decode(stream)
        while True:
            try:
                frame = next(decoded, None)
            except Exception as e:  # PyAV raises its own error types for every kind of broken file
                raise DataError(f"cannot decode video {path} (after {done + len(frames)} frames): "
                                f"{type(e).__name__}: {e}") from e
            if frame is None or len(frames) == chunk:
                if frames:
                    done += len(frames)
                    yield np.ascontiguousarray(np.stack(frames), dtype=np.uint8)
                    frames = []
                if frame is None:
                    break
            frames.append(gray.reformat(frame, format="gray").to_ndarray())
    finally:
        container.close()
    if not done:
        raise DataError(f"{path}: the video has no decodable frames")
    if expected and done < 0.98 * expected - 1:  # a cut-off AVI or MKV decodes its first part without error
        raise DataError(f"{path}: only {done} of the {expected} frames its header promises could be decoded: "
                        "the file is truncated or damaged")


def read_video_file(path: str | Path) -> tuple[np.ndarray, float | None]:
    """A video file decoded by PyAV → (uint8 T×H×W grey frames, frames per second)."""
    return np.concatenate(list(iter_video_file(path))), video_header(path)[0]


@dataclass
class FootageSource:
    """One clip of a user's footage, not yet read: a video file or a folder of frames. It is read
    a few hundred frames at a time (`chunks`), which is how `score` goes through long footage and
    `fit` cuts its training samples; `len` and `frame_shape` read no more than they need."""

    name: str
    path: Path
    fps: float | None = None
    header_frames: int | None = None  # what a video's header states; counted frames may differ
    _length: int | None = field(default=None, repr=False)
    _shape: tuple[int, int] | None = field(default=None, repr=False)

    @property
    def source(self) -> str:
        return str(self.path)

    def chunks(self, size: int | None = None) -> Iterator[np.ndarray]:
        size = size or CHUNK_FRAMES
        return iter_frame_folder(self.path, size) if self.path.is_dir() else iter_video_file(self.path, size)

    def __len__(self) -> int:
        if self._length is None:
            if self.path.is_dir():
                self._length = len(list_frames(self.path))
            else:  # a video's header count can be off: count what decodes
                self._length = 0
                for chunk in self.chunks():
                    self._length += len(chunk)
                    self._shape = tuple(chunk.shape[1:])
        return self._length

    @property
    def frame_shape(self) -> tuple[int, int]:
        if self._shape is None:
            self._shape = tuple(next(iter(self.chunks(1))).shape[1:])
        return self._shape

    def estimated_len(self) -> int | None:
        """The frame count without decoding: the files of a frame folder, a video's header."""
        return len(self) if self._length is not None or self.path.is_dir() else self.header_frames

    def read(self) -> Clip:
        return Clip(self.name, np.concatenate(list(self.chunks())), source=self.source)


def list_footage(path: str | Path) -> list[FootageSource]:
    """The clips of a user's footage, not yet read: a video file, a folder of video files, a folder
    of frames (one clip) or a folder of frame folders (one clip each)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"no such file or folder: {path}")
    if path.is_file():
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise DataError(f"{path} is not a video file ({', '.join(sorted(VIDEO_SUFFIXES))}) "
                            "nor a folder of frames")
        return [FootageSource(path.stem, path, *video_header(path))]
    videos = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
                     and not p.name.startswith(".")), key=natural_key)
    if videos:
        return [FootageSource(v.stem, v, *video_header(v)) for v in videos]
    if list_frames(path):
        return [FootageSource(path.name, path)]
    # UCSD's `Test001_gt` folders hold ground-truth masks, not footage
    folders = sorted((p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")
                      and not p.name.endswith("_gt")), key=natural_key)
    if not folders:
        raise DataError(f"{path} holds no frames, frame folders or video files")
    return [FootageSource(f.name, f) for f in folders]


def load_footage(path: str | Path) -> VideoData:
    """A user's footage read whole (training needs it; `score` reads `list_footage` a chunk at a time)."""
    sources = list_footage(path)
    rates = {s.fps for s in sources}
    return VideoData([s.read() for s in sources], str(path), rates.pop() if len(rates) == 1 else None)


# ---- ground truth ------------------------------------------------------------------------------
_RANGE = re.compile(r"(\d+)\s*:\s*(\d+)")


def parse_ucsd_ground_truth(text: str, origin: str = "UCSD .m file") -> list[list[tuple[int, int]]]:
    """The dataset's own `UCSDped2.m`: one `TestVideoFile{end+1}.gt_frame = [a:b, c:d];` per
    test clip, frames counted from 1, ranges inclusive → per clip a list of (a, b)."""
    out = []
    for line in text.splitlines():
        if "gt_frame" not in line:
            continue
        body = line.split("=", 1)[-1]
        ranges = [(int(a), int(b)) for a, b in _RANGE.findall(body)]
        if not ranges and "[]" not in body.replace(" ", ""):
            raise DataError(f"{origin}: cannot read the frame ranges in {line.strip()!r}")
        out.append(ranges)
    if not out:
        raise DataError(f"{origin}: no `gt_frame = [a:b]` lines")
    return out


def read_ground_truth_mat(path: Path) -> list[list[tuple[int, int]]]:
    """`ped2.mat`: variable `gt`, one 2×k array of (start; end) columns per test clip (from 1)."""
    from scipy.io import loadmat
    try:
        gt = loadmat(str(path))["gt"]
    except Exception as e:
        raise DataError(f"cannot read ground truth {path}: {type(e).__name__}: {e}") from e
    out = []
    for item in np.asarray(gt, dtype=object).ravel():
        a = np.asarray(item, dtype=np.int64)
        if a.ndim != 2 or a.shape[0] != 2:
            raise DataError(f"{path}: each entry of `gt` must be a 2×k array of (start; end) frames, got {a.shape}")
        out.append([(int(s), int(e)) for s, e in a.T])
    return out


def frame_labels(ranges: list[tuple[int, int]], n_frames: int, clip: str, origin: str) -> np.ndarray:
    """1-based inclusive ranges → a 0/1 label per frame; a range past the clip's end is an error."""
    labels = np.zeros(n_frames, np.int64)
    for a, b in ranges:
        if not 1 <= a <= b:
            raise DataError(f"{origin}: clip {clip}: invalid abnormal range {a}:{b}")
        if b > n_frames:
            raise DataError(f"{origin}: clip {clip}: abnormal range {a}:{b} goes beyond its {n_frames} frames")
        labels[a - 1:b] = 1
    return labels


def read_masks(folder: Path, n_frames: int, shape: tuple[int, int]) -> np.ndarray:
    """Pixel masks of one clip (any non-zero pixel = abnormal) → bool T×H×W."""
    files = list_frames(folder)
    if len(files) != n_frames:
        raise DataError(f"{folder}: {len(files)} mask images for a clip of {n_frames} frames")
    masks = np.stack([_read_grey(f) > 0 for f in files])
    if masks.shape[1:] != shape:
        raise DataError(f"{folder}: masks are {masks.shape[2]}×{masks.shape[1]}, frames {shape[1]}×{shape[0]}")
    return masks


# ---- UCSD Ped2 ---------------------------------------------------------------------------------
def find_ped2(root: str | Path) -> tuple[str, Path]:
    """Which Ped2 layout is under `root`: ("frames", folder) or ("original", folder)."""
    root = Path(root)
    for folder in (root / "ped2", root):
        if (folder / "training" / "frames").is_dir() and (folder / "testing" / "frames").is_dir():
            return "frames", folder
    for folder in (root / "UCSDped2", root / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2", root):
        if (folder / "Train").is_dir() and (folder / "Test").is_dir():
            return "original", folder
    raise DataError(f"UCSD Ped2 not found under {root}: expected ped2/training/frames/NN/ and "
                    f"ped2/testing/frames/NN/ (with ped2.mat or UCSDped2.m), or the original "
                    f"UCSDped2/Train/Train001/ and UCSDped2/Test/Test001/")


def _ground_truth(folder: Path) -> tuple[list[list[tuple[int, int]]], str]:
    for name in ("UCSDped2.m", "ped2.mat"):
        for where in (folder, folder.parent):
            path = where / name
            if path.is_file():
                if path.suffix == ".m":
                    try:
                        text = path.read_text(errors="replace")
                    except OSError as e:
                        raise DataError(f"cannot read ground truth {path}: {e}") from e
                    return parse_ucsd_ground_truth(text, str(path)), str(path)
                return read_ground_truth_mat(path), str(path)
    raise DataError(f"no frame ground truth for {folder}: expected UCSDped2.m or ped2.mat beside it")


def load_ped2(root: str | Path) -> tuple[VideoData, VideoData]:
    """(training clips, labelled test clips) of UCSD Ped2, from either layout."""
    layout, folder = find_ped2(root)
    if layout == "frames":
        train_dirs = _subfolders(folder / "training" / "frames")
        test_dirs = _subfolders(folder / "testing" / "frames")
        mask_root = folder / "testing" / "pixel_masks"
        mask_dirs = {d.name: mask_root / d.name for d in test_dirs}
    else:
        train_dirs = [d for d in _subfolders(folder / "Train") if not d.name.endswith("_gt")]
        test_dirs = [d for d in _subfolders(folder / "Test") if not d.name.endswith("_gt")]
        mask_dirs = {d.name: d.with_name(d.name + "_gt") for d in test_dirs}
    gt, gt_origin = _ground_truth(folder)
    if len(gt) != len(test_dirs):
        raise DataError(f"{gt_origin} gives ground truth for {len(gt)} test clips, but "
                        f"{len(test_dirs)} test clip folders were found")
    source = "UCSD Ped2 (JPEG frames)" if layout == "frames" else "UCSD Ped2 (original TIFF frames)"
    train = VideoData([Clip(d.name, read_frame_folder(d), source=str(d)) for d in train_dirs], source, 10.0)
    clips = []
    for d, ranges in zip(test_dirs, gt):
        frames = read_frame_folder(d)
        labels = frame_labels(ranges, len(frames), d.name, gt_origin)
        masks = read_masks(mask_dirs[d.name], len(frames), frames.shape[1:]) if mask_dirs[d.name].is_dir() else None
        clips.append(Clip(d.name, frames, labels, masks, source=str(d)))
    test = VideoData(clips, source, 10.0, {"ground_truth": Path(gt_origin).name, "layout": layout})
    return train, test


def _subfolders(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"missing folder {folder}")
    dirs = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_key)
    if not dirs:
        raise DataError(f"no clip folders in {folder}")
    return dirs


def subsample(video: VideoData, clips: Sequence[int] | None = None, max_frames: int | None = None) -> VideoData:
    """A smaller copy (for tests and quick looks): some clips, each cut to its first frames."""
    chosen = [video.clips[i] for i in clips] if clips is not None else list(video.clips)
    cut = lambda a: None if a is None else a[:max_frames]  # noqa: E731
    return VideoData([Clip(c.name, c.frames[:max_frames], cut(c.labels), cut(c.masks), c.source) for c in chosen],
                     video.source, video.fps, dict(video.notes))
