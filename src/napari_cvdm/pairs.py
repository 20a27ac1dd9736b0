"""Paired-folder discovery: inputs and targets with matching names (no torch, Qt or napari).

``folder/input/`` and ``folder/target/`` hold images whose names match without their image ending
(``cell01.tif`` pairs with ``cell01.ome.tif``); a flat folder written by ``napari-cvdm simulate``
(``<i>_input.tif`` and ``<i>_target.tif``) works too. Re-exported by :mod:`napari_cvdm.io`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

__all__ = ["IMAGE_SUFFIXES", "ImagePair", "find_image_pairs", "image_stem"]

IMAGE_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".mrc")
"""File name endings :func:`read_image` understands (case-insensitive)."""


@dataclass(frozen=True)
class ImagePair:
    """An input image and its target found by :func:`find_image_pairs`."""

    name: str
    input_path: Path
    target_path: Path


ZARR_SUFFIXES = (".ome.zarr", ".zarr")
"""Folder name endings of OME-Zarr images (read by ``read_image``, not paired for training)."""


def image_stem(path: str | os.PathLike) -> str:
    """File name without a known image ending (``a.ome.tif`` → ``a``, ``a.ome.zarr`` → ``a``);
    ``""`` if not an image."""
    name = Path(path).name
    lower = name.lower()
    for suffix in IMAGE_SUFFIXES + ZARR_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return ""


def _images_by_stem(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        stem = image_stem(entry)
        if not stem or not entry.is_file() or entry.name.startswith("."):
            continue
        if stem in found:
            raise InputError(
                f"{folder} holds two images named {stem!r} ({found[stem].name}, {entry.name}); "
                "keep one per name."
            )
        found[stem] = entry
    return found


def _mismatch_message(only_in: list[str], where: str) -> str:
    shown = ", ".join(only_in[:5]) + (f" and {len(only_in) - 5} more" if len(only_in) > 5 else "")
    return f"{len(only_in)} only in {where}: {shown}"


def find_image_pairs(
    folder: str | os.PathLike, input_dir: str = "input", target_dir: str = "target"
) -> list[ImagePair]:
    """Pairs of images with matching names in ``folder/input/`` and ``folder/target/``.

    Names match without their image ending (``cell01.tif`` pairs with ``cell01.ome.tif``). A flat
    folder written by ``napari-cvdm simulate`` (``<i>_input.tif``, ``<i>_target.tif``) also works.

    Raises
    ------
    InputError
        Missing folders, no images, or names present on one side only (the message lists them).
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; pass the folder that holds input/ and target/.")
    inputs_dir, targets_dir = root / input_dir, root / target_dir
    if inputs_dir.is_dir() and targets_dir.is_dir():
        inputs, targets = _images_by_stem(inputs_dir), _images_by_stem(targets_dir)
        where_in, where_tg = f"{input_dir}/", f"{target_dir}/"
    else:
        flat = _images_by_stem(root)
        inputs = {s[: -len("_input")]: p for s, p in flat.items() if s.endswith("_input")}
        targets = {s[: -len("_target")]: p for s, p in flat.items() if s.endswith("_target")}
        where_in, where_tg = "*_input files", "*_target files"
        if not inputs and not targets:
            raise InputError(
                f"{root} has no {input_dir}/ and {target_dir}/ sub-folders (and no *_input/"
                "*_target images); put inputs and targets with matching names there."
            )
    only_in = sorted(set(inputs) - set(targets))
    only_tg = sorted(set(targets) - set(inputs))
    if only_in or only_tg:
        parts = [_mismatch_message(only_in, where_in)] if only_in else []
        parts += [_mismatch_message(only_tg, where_tg)] if only_tg else []
        raise InputError(
            f"Inputs and targets in {root} do not pair up by name ({'; '.join(parts)}); every "
            "input needs a target with the same name."
        )
    if not inputs:
        raise InputError(f"No images found in {inputs_dir} and {targets_dir}.")
    return [ImagePair(name, inputs[name], targets[name]) for name in sorted(inputs)]
