"""The reconstruction's napari layers: names, geometry, colormaps, contrast and provenance.

``<input>_cvdm`` (mean), ``<input>_cvdm_std`` (hidden, magma), ``<input>_cvdm_schedule`` (λ map,
hidden, viridis) and ``<input>_cvdm_gamma`` (γ(t*, x) stack, t* on a leading slider axis,
hidden, viridis). Geometry comes from :mod:`napari_cvdm.geometry`; a dropped axis that follows a
kept leading axis (the focus axis of a QPI (T, Z, Y, X) stack) stays as one plane spanning the
stack's Z range, so T stays on napari's T slider (``geometry.one_plane_axes``). Re-runs update
same-named layers in place; "keep previous results" picks names with a numeric suffix instead.

Every function here runs on the main thread (called from worker callbacks). No torch.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..geometry import LayerGeometry, one_plane_axes, output_geometry, prepend_axis

if TYPE_CHECKING:
    import napari

__all__ = [
    "InputGeometry",
    "OutputLayers",
    "layer_geometry",
    "output_names",
    "percentile_limits",
]

ROLES = ("mean", "std", "schedule", "gamma")
_SUFFIX = {"mean": "", "std": "_std", "schedule": "_schedule", "gamma": "_gamma"}


def output_names(input_name: str, existing: Collection[str], keep_previous: bool) -> dict[str, str]:
    """Layer name per role. Without ``keep_previous`` the plain names (re-runs reuse them);
    with it, the first ``_<n>`` suffix (n ≥ 2) for which no name exists yet."""
    base = {role: f"{input_name}_cvdm{_SUFFIX[role]}" for role in ROLES}
    if not keep_previous or not any(name in existing for name in base.values()):
        return base
    n = 2
    while any(f"{name}_{n}" in existing for name in base.values()):
        n += 1
    return {role: f"{name}_{n}" for role, name in base.items()}


def percentile_limits(
    data: np.ndarray, low: float = 0.5, high: float = 99.5
) -> tuple[float, float]:
    """Contrast limits from percentiles of the finite values (a small range if they are equal)."""
    values = np.asarray(data, dtype=np.float32)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, [low, high]))
    if not hi > lo:
        hi = lo + max(abs(lo) * 1e-3, 1e-6)
    return lo, hi


@dataclass(frozen=True)
class InputGeometry:
    """The input layer's geometry, snapshotted at Run (per axis of the layer); ``shape`` is
    the layer data's (None: unknown, dropped axes are then never kept as one plane)."""

    scale: tuple[float, ...]
    translate: tuple[float, ...]
    units: tuple[str, ...] | None
    axis_labels: tuple[str, ...] | None
    shape: tuple[int, ...] | None = None


def layer_geometry(layer: Any) -> InputGeometry:
    """Snapshot ``scale``, ``translate``, ``units``, ``axis_labels`` and the data shape of a
    napari layer."""
    units = getattr(layer, "units", None)
    labels = getattr(layer, "axis_labels", None)
    return InputGeometry(
        scale=tuple(float(s) for s in layer.scale),
        translate=tuple(float(t) for t in layer.translate),
        units=None if units is None else tuple(str(u) for u in units),
        axis_labels=None if labels is None else tuple(str(a) for a in labels),
        shape=tuple(int(n) for n in layer.data.shape),
    )


def _geometry_for(
    source: InputGeometry,
    drop_axes: tuple[int, ...],
    input_yx: tuple[int, int],
    shape: tuple,
    collapse: Mapping[int, int] | None = None,
) -> LayerGeometry:
    """Geometry of an output array of ``shape`` whose last two axes cover the input's field
    (``collapse``: input axes kept as one plane, see ``geometry.output_geometry``)."""
    factor = (shape[-2] / input_yx[0], shape[-1] / input_yx[1])
    geometry = output_geometry(
        source.scale,
        source.translate,
        sr_factor=factor,
        drop_axes=drop_axes,
        units=source.units,
        axis_labels=source.axis_labels,
        collapse=collapse,
    )
    ndim = len(shape)
    if geometry.ndim > ndim:  # fewer leading axes than expected: keep the trailing ones
        cut = geometry.ndim - ndim
        geometry = LayerGeometry(
            geometry.scale[cut:],
            geometry.translate[cut:],
            None if geometry.units is None else geometry.units[cut:],
            None if geometry.axis_labels is None else geometry.axis_labels[cut:],
        )
    while geometry.ndim < ndim:
        geometry = prepend_axis(geometry, label=f"axis{ndim - geometry.ndim - 1}")
    return geometry


@dataclass
class OutputLayers:
    """Creates and updates the output layers of one run.

    ``drop_axes`` are the input axes absent from the output (QPI focus axis; leading axes when
    only the current frame is reconstructed); ``input_yx`` the (Y, X) size of the input frames.
    """

    viewer: napari.viewer.Viewer
    names: Mapping[str, str]
    source: InputGeometry
    drop_axes: tuple[int, ...]
    input_yx: tuple[int, int]
    mean_colormap: str = "gray"
    source_metadata: Mapping[str, Any] = field(default_factory=dict)
    layers: dict[str, Any] = field(default_factory=dict)

    @property
    def created(self) -> bool:
        """Whether any layer of this run is in the viewer (after the first sample group)."""
        return bool(self.layers)

    def _layout(self, data: np.ndarray, lead: int = 0) -> tuple[np.ndarray, LayerGeometry]:
        """``data`` as the layer holds it, and the geometry of its axes after ``lead``.

        A dropped axis that follows a kept leading axis (``geometry.one_plane_axes``) gets a
        length-1 axis back, spanning the input's extent on it; ``lead`` leading axes of
        ``data`` (γ's t*) are not part of the input's geometry.
        """
        ndim = len(self.source.scale)
        shape = self.source.shape
        keep = one_plane_axes(ndim, self.drop_axes) if shape is not None else ()
        if not keep or data.ndim - lead != ndim - len(self.drop_axes):
            geometry = _geometry_for(self.source, self.drop_axes, self.input_yx, data.shape[lead:])
            return data, geometry
        dropped = sorted({a % ndim for a in self.drop_axes})
        drop = tuple(a for a in dropped if a not in keep)
        for axis in keep:  # ascending: each insertion sits after the earlier ones
            data = np.expand_dims(data, lead + axis - sum(d < axis for d in drop))
        collapse = {a: int(shape[a]) for a in keep}
        return data, _geometry_for(
            self.source, drop, self.input_yx, data.shape[lead:], collapse=collapse
        )

    def _t_star_layout(self, data: np.ndarray, replacing: Any) -> tuple[np.ndarray, LayerGeometry]:
        """γ(t*, x) with t* on a world axis of its own, and its geometry.

        napari aligns layers on their last axes, so a (K, Y, X) γ stack beside a (Z, Y, X) input
        would put t* on the Z slider (shown in µm). When the viewer already has as many axes as
        the stack, singleton axes are inserted after t*: each spans the whole range of its world
        axis (so γ shows at any Z or T) with that axis' unit and label, and t* gets a new,
        dimensionless leading axis (the t* values are in the metadata).
        """
        others = [  # the viewer's data axes, without earlier γ stacks (their own t* axis)
            layer
            for layer in self.viewer.layers
            if layer is not replacing and "t_star" not in (layer.metadata or {}).get("cvdm", {})
        ]
        world_ndim = max((layer.ndim for layer in others), default=0)
        data, geometry = self._layout(data, lead=1)
        pad = max(0, world_ndim + 1 - data.ndim)
        if pad:
            extent = self.viewer.layers.get_extent(others)
            units = extent.units
            labels = self.viewer.dims.axis_labels[-world_ndim:]
            first = world_ndim - (data.ndim - 1) - pad  # world index of the first padded axis
            for axis in reversed(range(first, first + pad)):
                low, high = (float(v) for v in extent.world[:, axis])
                step = float(extent.step[axis])
                geometry = prepend_axis(
                    geometry,
                    scale=high - low + step,
                    translate=(low + high) / 2,
                    unit=str(units[axis]) if units is not None else "",
                    label=str(labels[axis]),
                )
            data = data.reshape(data.shape[:1] + (1,) * pad + data.shape[1:])
        return data, prepend_axis(geometry, label="t*", unit="")

    def _metadata(self, provenance: Mapping[str, Any]) -> dict[str, Any]:
        return {"cvdm": dict(provenance), "source_metadata": dict(self.source_metadata)}

    def _put(
        self,
        role: str,
        data: np.ndarray,
        provenance: Mapping[str, Any],
        *,
        colormap: str,
        visible: bool,
        contrast: tuple[float, float],
        t_star_axis: bool = False,
    ) -> Any:
        data = np.ascontiguousarray(data, dtype=np.float32)
        name = self.names[role]
        layer = self.layers.get(role)
        if layer is not None and layer.name not in self.viewer.layers:
            layer = None  # the user deleted it during the run: add it again
        if layer is None and name in self.viewer.layers:
            layer = self.viewer.layers[name]  # re-run: update the previous result in place
        if not t_star_axis:
            data, geometry = self._layout(data)
        else:  # γ(t*, x): the index of t* on a leading slider axis (values in metadata)
            data, geometry = self._t_star_layout(data, layer)
        if layer is not None and layer.ndim != data.ndim:
            self.viewer.layers.remove(layer)  # napari cannot change a layer's dimensionality
            layer = None
        if layer is None:
            layer = self.viewer.add_image(
                data,
                name=name,
                colormap=colormap,
                visible=visible,
                contrast_limits=contrast,
                metadata=self._metadata(provenance),
                **geometry.as_layer_kwargs(),
            )
        else:
            layer.data = data
            for key, value in geometry.as_layer_kwargs().items():
                setattr(layer, key, value)
            layer.metadata = self._metadata(provenance)
            layer.colormap = colormap
            layer.contrast_limits_range = (
                min(contrast[0], float(np.nanmin(data))),
                max(contrast[1], float(np.nanmax(data))),
            )
            layer.contrast_limits = contrast
        self.layers[role] = layer
        return layer

    def show_running(
        self, mean: np.ndarray, std: np.ndarray, provenance: Mapping[str, Any]
    ) -> None:
        """Progressive refinement: the first call creates mean/std, later ones update the data
        in place (contrast limits are set only when a run first shows its layers)."""
        pairs = (("mean", mean), ("std", std))
        laid_out = {role: self._layout(np.asarray(data))[0] for role, data in pairs}
        if all(
            role in self.layers
            and self.layers[role].name in self.viewer.layers
            and self.layers[role].data.shape == laid_out[role].shape
            for role in ("mean", "std")
        ):
            for role, data in laid_out.items():
                layer = self.layers[role]
                layer.data[...] = np.asarray(data, dtype=np.float32)
                layer.metadata = self._metadata(provenance)
                layer.refresh()
            return
        self._put_mean_and_std(mean, std, provenance)

    def _put_mean_and_std(
        self, mean: np.ndarray, std: np.ndarray, provenance: Mapping[str, Any]
    ) -> None:
        """Create or replace the mean (visible) and std (hidden, magma) layers, contrast set."""
        self._put(
            "mean",
            mean,
            provenance,
            colormap=self.mean_colormap,
            visible=True,
            contrast=percentile_limits(mean),
        )
        self._put(
            "std",
            std,
            provenance,
            colormap="magma",
            visible=False,
            contrast=(0.0, max(percentile_limits(std, 0.0, 99.5)[1], 1e-6)),
        )

    def finish(
        self,
        mean: np.ndarray,
        std: np.ndarray,
        schedule: np.ndarray | None,
        gamma: np.ndarray | None,
        t_star: np.ndarray | None,
        provenance: Mapping[str, Any],
    ) -> None:
        """Final arrays: mean and std (re-contrasted), then the schedule and γ stack layers."""
        self._put_mean_and_std(mean, std, provenance)
        if schedule is not None:
            self._put(
                "schedule",
                schedule,
                provenance,
                colormap="viridis",
                visible=False,
                contrast=percentile_limits(schedule, 0.0, 100.0),
            )
        if gamma is not None:
            if t_star is not None:
                provenance = {**provenance, "t_star": [float(t) for t in np.ravel(t_star)]}
            self._put(
                "gamma",
                gamma,
                provenance,
                colormap="viridis",
                visible=False,
                contrast=percentile_limits(gamma, 0.0, 100.0),
                t_star_axis=True,
            )

    def mark(self, **fields: Any) -> None:
        """Update provenance fields (e.g. ``status="cancelled"``) on every layer of this run."""
        for layer in self.layers.values():
            meta = dict(layer.metadata)
            meta["cvdm"] = {**meta.get("cvdm", {}), **fields}
            layer.metadata = meta
