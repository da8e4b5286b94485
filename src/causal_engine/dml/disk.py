"""Videos that stay on disk: an [N, C, T, H, W] .npy file or a folder of per-video .npy files, read row by row.

A data set of real size (20,000 clips of 3×16×64×64 are 15.7 GB as float32) does not fit in memory, so
`data=video_files` hands the DML loop a `DiskVideos` instead of a tensor. Indexing it (`videos[r]`,
`videos[rows]`, `videos[i:j]`) reads just those rows and returns a fresh float32 tensor; nothing else is kept.

Rows are read with plain file reads, not through a memory map: pages of a map that a pass over the data
touches count towards the process's resident set until the kernel reclaims them, so one epoch over a mapped
15.7 GB file reports ~15.7 GB of RSS. Plain reads leave the bytes in the page cache, which is shared and
reclaimable and not charged to the process; the process holds only the batch it asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from causal_engine.errors import UserError


class VideoFileError(UserError):
    """A videos file or folder that cannot be read as [N, C, T, H, W] videos."""


class DiskVideos:
    """Lazy [N, C, T, H, W] videos: `shape`, `len`, `dim()` like a tensor; indexing reads the rows from disk."""

    def __init__(self, shape: Sequence[int], source: str) -> None:
        self.shape = tuple(int(s) for s in shape)  # (N, C, T, H, W)
        self.source = source

    def __len__(self) -> int:
        return self.shape[0]

    def dim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: int | slice | np.ndarray | torch.Tensor | Sequence[int]) -> torch.Tensor:
        """`videos[r]` → [C, T, H, W]; `videos[i:j]` or `videos[rows]` → [len(rows), C, T, H, W] (float32)."""
        if isinstance(key, slice):
            return self._tensor(np.arange(len(self))[key])
        rows = np.asarray(key, dtype=np.int64)  # an int, a list, an array or a CPU tensor of rows
        if rows.size and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"row(s) out of range for {len(self)} videos")
        videos = self._tensor(np.atleast_1d(rows) % len(self))
        return videos[0] if rows.ndim == 0 else videos

    def _tensor(self, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self._read(rows), dtype=np.float32))

    def _read(self, rows: np.ndarray) -> np.ndarray:
        """The videos at `rows` (non-negative, any order) as [len(rows), C, T, H, W] in the stored dtype."""
        raise NotImplementedError


class NpyVideos(DiskVideos):
    """One [N, C, T, H, W] .npy file (C order, any numeric dtype); contiguous runs of rows are read at once."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        try:
            # A memory map only to parse the header (shape, dtype, where the data starts); no page is read.
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as error:
            raise VideoFileError(f"data.videos: {path} is not a readable .npy array ({error}).") from error
        if mapped.ndim != 5:
            raise VideoFileError(
                f"data.videos: {path} has shape {mapped.shape}; it must be [N, C, T, H, W] "
                f"(add a channel axis for grey videos: array[:, None])."
            )
        if not mapped.flags.c_contiguous:
            raise VideoFileError(
                f"data.videos: {path} is stored in Fortran order; save it in C order: "
                f"np.save(path, np.ascontiguousarray(a))."
            )
        if not np.issubdtype(mapped.dtype, np.number) or np.issubdtype(mapped.dtype, np.complexfloating):
            raise VideoFileError(f"data.videos: {path} holds {mapped.dtype} values; videos must be real numbers.")
        super().__init__(mapped.shape, str(path))
        self.path, self.dtype, self.offset = path, mapped.dtype, int(mapped.offset)
        self.row_shape = mapped.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape)) * mapped.dtype.itemsize
        del mapped

    def _read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.row_shape), dtype=self.dtype)  # [m, C, T, H, W]
        # Runs of consecutive rows (a slice, a sorted fold) are one read each.
        starts = np.flatnonzero(np.diff(rows, prepend=-2) != 1)
        with self.path.open("rb", buffering=0) as f:
            for a, b in zip(starts, [*starts[1:], len(rows)], strict=True):
                f.seek(self.offset + int(rows[a]) * self.row_bytes)
                view = memoryview(out[a:b]).cast("B")
                if f.readinto(view) != len(view):
                    raise VideoFileError(f"data.videos: {self.path} is truncated (rows {rows[a]}..{rows[b - 1]}).")
        return out


class VideoFolder(DiskVideos):
    """A folder of per-video [C, T, H, W] .npy files, row i = the i-th file in name order."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        self.files = sorted(p for p in path.iterdir() if p.suffix == ".npy")
        if not self.files:
            raise VideoFileError(
                f"data.videos: the folder {path} holds no .npy files (one [C, T, H, W] file per video)."
            )
        first = np.load(self.files[0], mmap_mode="r", allow_pickle=False)
        if first.ndim != 4:
            raise VideoFileError(
                f"data.videos: {self.files[0]} has shape {first.shape}; each video file must be [C, T, H, W]."
            )
        super().__init__((len(self.files), *first.shape), str(path))
        self.path = path

    def _read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.float32)  # [m, C, T, H, W]
        for i, r in enumerate(rows):
            video = np.load(self.files[r], allow_pickle=False)
            if video.shape != self.shape[1:]:
                raise VideoFileError(
                    f"data.videos: {self.files[r]} (row {r}) has shape {video.shape} but the first file has "
                    f"{self.shape[1:]}; every video must have the same [C, T, H, W]."
                )
            out[i] = video
        return out


def open_videos(path: str | Path) -> DiskVideos:
    """The videos at `path`: an [N, C, T, H, W] .npy file, or a folder of [C, T, H, W] .npy files."""
    path = Path(str(path)).expanduser()
    if path.is_dir():
        return VideoFolder(path)
    if not path.is_file():
        raise VideoFileError(
            f"data.videos: not found: {path}; give an [N, C, T, H, W] .npy file or a folder of [C, T, H, W] .npy files."
        )
    return NpyVideos(path)


class NpyWriter:
    """Write an [N, *row_shape] float32 .npy file chunk by chunk, in row order, without holding it in memory."""

    def __init__(self, path: str | Path, shape: Sequence[int]) -> None:
        self.path, self.shape, self.written = Path(path), tuple(int(s) for s in shape), 0
        self._file = self.path.open("wb")
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
            "fortran_order": False,
            "shape": self.shape,
        }
        np.lib.format.write_array_header_2_0(self._file, header)

    def write(self, rows: np.ndarray) -> None:
        """Append `rows` [m, *row_shape]."""
        if rows.shape[1:] != self.shape[1:] or self.written + len(rows) > self.shape[0]:
            raise ValueError(f"{self.path}: rows {rows.shape} do not continue an array of shape {self.shape}")
        np.ascontiguousarray(rows, dtype=np.float32).tofile(self._file)
        self.written += len(rows)

    def close(self) -> None:
        self._file.close()
        if self.written != self.shape[0]:
            raise ValueError(f"{self.path}: {self.written} of {self.shape[0]} rows written")

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._file.close()
