"""What a reconstruction assumes about its input, said in one line (CLI and widgets alike).

A microscopist must never be surprised by a silent default: when the file has no pixel size,
when the camera offset or the optics come from the model, when an image is resampled to the
model's PSF width, or when raw SIM frames are averaged, the CLI prints one ``note`` line per
input and the Reconstruct widget shows the same words before Run and in a notification at Run.

Pure functions on plain values. No torch, Qt or napari.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Assumptions", "for_file", "sr_resample_factor"]


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def sr_resample_factor(
    physics: Mapping[str, Any],
    pixel_size_um: float | None,
    na: float | None = None,
    wavelength_um: float | None = None,
) -> float:
    """The zoom an SR model applies to an input of ``pixel_size_um`` (1.0: none):
    :func:`napari_cvdm.tasks.sr.resample_factor`, the rule of its adapter."""
    from .tasks.sr import resample_factor

    return resample_factor(physics, pixel_size_um, na, wavelength_um)


@dataclass(frozen=True)
class Assumptions:
    """The values one SR or QPI reconstruction uses and where each came from.

    ``*_source`` is ``"file"``, ``"layer"``, ``"option"`` (a CLI flag or a widget field the
    user set), ``"model"`` (the model's training value), ``"default"`` (a convention, e.g. the
    BioSR camera's pixel size) or ``None`` (unknown). ``applied_factor``: the resampling factor
    a run realised (whole output pixels), once known; else it is computed from the optics.
    """

    task: str
    model_physics: Mapping[str, Any]
    pixel_size_um: float | None = None
    pixel_source: str | None = None
    na: float | None = None
    na_source: str | None = None
    wavelength_um: float | None = None
    wavelength_source: str | None = None
    offset_adu: float | None = None
    offset_source: str | None = None
    dz_um: float | None = None
    dz_source: str | None = None
    raw_sim_frames: int = 0
    applied_factor: float | None = None

    @property
    def _task(self) -> Any:
        from .tasks import get

        return get(self.task)

    @property
    def resample_factor(self) -> float:
        """SR: the zoom applied before the model (1.0 for QPI and when nothing is resampled)."""
        if not self._task.resamples_to_model:
            return 1.0
        if self.applied_factor is not None:
            return 1.0 if abs(self.applied_factor - 1.0) < 1e-9 else float(self.applied_factor)
        return sr_resample_factor(
            self.model_physics, self.pixel_size_um, self.na, self.wavelength_um
        )

    def parts(self, cli: bool = False) -> list[str]:
        """One short phrase per assumption, in the order a microscopist checks them; ``cli``
        names the command-line flag that changes a default instead of the widget field."""
        out: list[str] = []
        model_px = self.model_physics.get("pixel_size_um")
        if self.raw_sim_frames:
            out.append(
                f"{self.raw_sim_frames} raw SIM frames averaged to one widefield image "
                "(BioSR convention)"
            )
        if self.pixel_size_um:
            where = {"default": "the BioSR camera's default", "option": "as given"}.get(
                self.pixel_source or "", f"from the {self.pixel_source or 'input'}"
            )
            out.append(f"pixel {_fmt(self.pixel_size_um)} µm ({where})")
        elif model_px:
            out.append(
                f"no pixel size in the input: assuming the model's {_fmt(model_px)} µm "
                + ("(give --pixel-size)" if cli else "(enter the pixel size to correct it)")
            )
        optics = []
        for label, key, unit in self._task.assumption_optics:
            value = getattr(self, key) or self.model_physics.get(key)
            source = getattr(self, f"{key.removesuffix('_um')}_source")
            if value:
                tag = {None: " (model's)", "model": " (model's)", "file": " (from the file)"}
                tag = tag.get(source, "")
                optics.append(f"{label} {_fmt(float(value))}{unit}{tag}")
        if optics:
            out.append(", ".join(optics))
        out.extend(self._camera_parts(cli))
        return out

    def _camera_parts(self, cli: bool) -> list[str]:
        """SR: the camera offset and the resampling (tasks with camera input)."""
        out: list[str] = []
        if self._task.camera_input:
            if self.offset_adu is not None:
                hint = "--offset" if cli else "set the field"
                tag = {"model": f" (the model's training value; {hint} if your camera differs)"}
                out.append(
                    f"camera offset {_fmt(self.offset_adu)} ADU"
                    + tag.get(self.offset_source or "", "")
                )
            factor = self.resample_factor
            if factor != 1.0:
                out.append(
                    f"resampled ×{factor:.3f} to the model's PSF width in pixels (output pixel "
                    f"{_fmt(self.pixel_size_um / (2 * factor))} µm)"
                )
            else:
                out.append("not resampled")
        return out

    def line(self, name: str, cli: bool = False) -> str:
        """``name: part; part; ...`` — the one line printed per input."""
        return f"{name}: " + "; ".join(self.parts(cli))


def for_file(
    task: str,
    model_metadata: Mapping[str, Any],
    file_meta: Any,
    *,
    pixel_size_um: float | None = None,
    na: float | None = None,
    wavelength_um: float | None = None,
    offset_adu: float | None = None,
    dz_um: float | None = None,
    raw_sim: bool | None = None,
    applied_factor: float | None = None,
    raw_frames: int | None = None,
) -> Assumptions:
    """The assumptions of ``predict``/``baseline`` for one file: the options given (None when
    not given) over what the file says (``io.ImageMetadata``) over the model's values.
    ``raw_sim``: None (automatic), True or False as ``--raw-sim``/``--no-raw-sim``;
    ``raw_frames``: how many raw SIM frames the file holds (9 or 15)."""
    from .imagemeta import file_optics
    from .tasks import get

    spec = get(task)
    extra = getattr(file_meta, "extra", None) or {}
    given = {"wavelength_um": wavelength_um, "dz_um": dz_um}
    stated = file_optics(extra)  # what a simulated stack states about its own optics
    sources = {key: "option" if value is not None else "model" for key, value in given.items()}
    for key in spec.optics_from_file:
        if given[key] is None and stated.get(key) is not None:
            given[key], sources[key] = stated[key], "file"
    wavelength_um, dz_um = given["wavelength_um"], given["dz_um"]
    file_px = getattr(file_meta, "pixel_size_um", None)
    if pixel_size_um is not None:
        px, px_source = float(pixel_size_um), "option"
    elif file_px:
        px = float(file_px[-1])
        px_source = "default" if extra.get("pixel_size_source") == "biosr-default" else "file"
    else:
        px, px_source = None, None
    rule = (model_metadata.get("normalization") or {}).get("input") or {}
    offset_source = "option" if offset_adu is not None else "model"
    if offset_adu is None and isinstance(rule.get("offset_adu"), int | float):
        offset_adu = float(rule["offset_adu"])
    frames = 0
    if spec.raw_sim_input and raw_sim is not False and (raw_sim or extra.get("raw_sim_frames")):
        frames = int(raw_frames or 9)
    return Assumptions(
        task=task,
        model_physics=model_metadata.get("physics") or {},
        pixel_size_um=px,
        pixel_source=px_source,
        na=na,
        na_source="option" if na is not None else "model",
        wavelength_um=wavelength_um,
        wavelength_source=sources["wavelength_um"],
        offset_adu=offset_adu if spec.camera_input else None,
        offset_source=offset_source,
        dz_um=dz_um,
        dz_source=sources["dz_um"],
        raw_sim_frames=frames,
        applied_factor=applied_factor,
    )
