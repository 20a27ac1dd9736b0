"""Output-layer geometry: where a reconstruction sits in world coordinates (pure, no Qt).

napari places pixel ``i`` of an axis at world position ``translate + i * scale`` (the pixel
centre). A super-resolved grid with factor ``k`` has ``k`` times more pixels over the same field
of view, so its pixel pitch is ``s / k`` and, for the pixel centres to tile the same field, its
first centre moves by ``-s (k - 1) / (2 k)``: for 2x and ``s = 0.1 µm`` the output has scale
0.05 µm and translate ``t - 0.025 µm``.

QPI keeps the input's Y/X geometry and drops the focus axis (the phase is one plane). Leading axes
(time, channel, ...) keep their own scale and translate. ``units`` and ``axis_labels`` travel with
their axes.

napari aligns a layer's axes with the viewer's *last* axes, so dropping an axis that comes after
a kept leading axis would shift that axis onto the dropped one's slider: the (T, Y, X) phase of a
(T, Z, Y, X) stack would put T on the Z slider. Such an axis is kept as one plane spanning the
input's whole extent on it (:func:`one_plane_axes`; ``collapse`` of :func:`output_geometry`), so
the result keeps T on the T slider and shows at every Z.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["LayerGeometry", "one_plane_axes", "output_geometry", "prepend_axis"]


@dataclass(frozen=True)
class LayerGeometry:
    """Per-axis geometry of a napari layer, in data units (µm for Y/X when the input had them).

    All tuples have one entry per axis of the layer; ``units`` and ``axis_labels`` are ``None``
    when the input did not carry them.
    """

    scale: tuple[float, ...]
    translate: tuple[float, ...]
    units: tuple[str, ...] | None = None
    axis_labels: tuple[str, ...] | None = None

    @property
    def ndim(self) -> int:
        return len(self.scale)

    def as_layer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``viewer.add_image`` / layer attributes (only what is known)."""
        kwargs: dict[str, Any] = {"scale": self.scale, "translate": self.translate}
        if self.units is not None:
            kwargs["units"] = self.units
        if self.axis_labels is not None:
            kwargs["axis_labels"] = self.axis_labels
        return kwargs


def _tuple_or_none(values: Sequence[Any] | None, ndim: int, name: str) -> tuple | None:
    if values is None:
        return None
    values = tuple(values)
    if len(values) != ndim:
        raise ValueError(f"{name} has {len(values)} entries for a {ndim}-D layer")
    return values


def _dropped_and_spans(
    ndim: int, drop_axes: Iterable[int], collapse: Mapping[int, int] | None
) -> tuple[set[int], dict[int, int]]:
    """The dropped axes (never Y or X) and the collapsed ones with their lengths, as
    non-negative indices; ``ValueError`` for axes out of range."""
    dropped = set()
    for axis in drop_axes:
        a = axis + ndim if axis < 0 else axis
        if not 0 <= a < ndim:
            raise ValueError(f"axis {axis} is out of range for a {ndim}-D layer")
        if a >= ndim - 2:
            raise ValueError(f"axis {axis} is Y or X and cannot be dropped")
        dropped.add(a)
    spans: dict[int, int] = {}
    for axis, length in (collapse or {}).items():
        a = axis + ndim if axis < 0 else axis
        if not 0 <= a < ndim - 2 or a in dropped or int(length) < 1:
            raise ValueError(f"cannot collapse axis {axis} (length {length}) of a {ndim}-D layer")
        spans[a] = int(length)
    return dropped, spans


def output_geometry(
    scale: Sequence[float],
    translate: Sequence[float] | None = None,
    *,
    sr_factor: float | Sequence[float] = 1,
    drop_axes: Iterable[int] = (),
    units: Sequence[str] | None = None,
    axis_labels: Sequence[str] | None = None,
    collapse: Mapping[int, int] | None = None,
) -> LayerGeometry:
    """Geometry of the output layer computed from an input layer's geometry.

    Parameters
    ----------
    scale, translate
        The input layer's per-axis scale and translate (translate defaults to zeros). The last two
        axes are (Y, X).
    sr_factor
        Super-resolution factor ``k`` on Y and X (1 for QPI): scale ``s / k`` and translate
        ``t - s (k - 1) / (2 k)``. One number for both axes or ``(k_y, k_x)``; a non-integer
        factor (output pixels / input pixels after resampling) keeps the same field of view.
    drop_axes
        Input axes that the output does not have, e.g. the QPI focus axis or the leading axes of a
        stack when only the current frame is reconstructed. Negative indices count from the end.
        Y and X cannot be dropped.
    units, axis_labels
        The input's per-axis units and labels; the entries of dropped axes are removed.
    collapse
        ``{axis: length}``: input axes (of that many planes) that the output keeps as one plane
        spanning their whole extent (scale ``length * s``, centred: translate
        ``t + (length - 1) s / 2``); see :func:`one_plane_axes`.

    Returns
    -------
    LayerGeometry
        With one entry per remaining axis, Y/X last.
    """
    scale = tuple(float(s) for s in scale)
    ndim = len(scale)
    if ndim < 2:
        raise ValueError(f"an image layer needs at least 2 axes (Y, X); got {ndim}")
    if translate is None:
        translate = (0.0,) * ndim
    translate = tuple(float(t) for t in translate)
    if len(translate) != ndim:
        raise ValueError(f"translate has {len(translate)} entries for a {ndim}-D layer")
    factors = (sr_factor, sr_factor) if isinstance(sr_factor, int | float) else tuple(sr_factor)
    if len(factors) != 2 or not all(
        isinstance(f, int | float) and not isinstance(f, bool) and f > 0 for f in factors
    ):
        raise ValueError(f"sr_factor must be a positive number or (k_y, k_x), got {sr_factor!r}")
    units_t = _tuple_or_none(units, ndim, "units")
    labels_t = _tuple_or_none(axis_labels, ndim, "axis_labels")
    dropped, spans = _dropped_and_spans(ndim, drop_axes, collapse)
    out_scale, out_translate = [], []
    for a in range(ndim):
        if a in dropped:
            continue
        s, t = scale[a], translate[a]
        if a in spans:
            out_scale.append(s * spans[a])
            out_translate.append(t + (spans[a] - 1) * s / 2)
        elif a >= ndim - 2:
            k = float(factors[a - (ndim - 2)])
            out_scale.append(s / k)
            out_translate.append(t - s * (k - 1) / (2 * k))
        else:
            out_scale.append(s)
            out_translate.append(t)
    keep = [a for a in range(ndim) if a not in dropped]
    return LayerGeometry(
        scale=tuple(out_scale),
        translate=tuple(out_translate),
        units=None if units_t is None else tuple(str(units_t[a]) for a in keep),
        axis_labels=None if labels_t is None else tuple(str(labels_t[a]) for a in keep),
    )


def one_plane_axes(ndim: int, drop_axes: Iterable[int]) -> tuple[int, ...]:
    """The axes of ``drop_axes`` (of an ``ndim``-D input) that must stay as one plane.

    An axis can be dropped only when no kept axis precedes it (napari aligns the remaining
    axes on the viewer's last ones); a dropped axis that follows a kept leading axis (the focus
    axis of a (T, Z, Y, X) stack) is kept with one plane instead. Sorted, non-negative.
    """
    dropped = sorted({a + ndim if a < 0 else a for a in drop_axes})
    kept_leading = [a for a in range(ndim - 2) if a not in dropped]
    if not kept_leading:
        return ()
    return tuple(a for a in dropped if a > kept_leading[0])


def prepend_axis(
    geometry: LayerGeometry,
    *,
    scale: float = 1.0,
    translate: float = 0.0,
    unit: str = "",
    label: str = "t*",
) -> LayerGeometry:
    """Add one leading axis (e.g. the diffusion time ``t*`` of a γ(t*, x) stack, for the slider).

    The unit is only used when the geometry carries units; an empty unit becomes
    ``"pixel"`` (napari's name for a dimensionless axis).
    """
    units = None if geometry.units is None else (unit or "pixel", *geometry.units)
    labels = None if geometry.axis_labels is None else (label, *geometry.axis_labels)
    return LayerGeometry(
        scale=(float(scale), *geometry.scale),
        translate=(float(translate), *geometry.translate),
        units=units,
        axis_labels=labels,
    )
