"""Centerlines in vmtk's convention: read/write .vtp, and extract them from a lumen mask with vmtk.

A .vtp holds one polyline per inlet-to-outlet path (shared trunk points repeated), RAS millimetres, and the point
array MaximumInscribedSphereRadius (mm). Extraction: lumen mask -> surface (discrete flying edges in voxel space,
windowed-sinc smoothing, then the image's IJK-to-RAS transform, so oblique grids are exact) -> inlet and outlets
from geodesic distances inside the mask (farthest-point search; the inlet is the widest end, the ostium) -> vmtk
centerlines from the inlet to every outlet, resampled every 0.5 mm.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path as FilePath

import numpy as np
import SimpleITK as sitk
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from .. import geometry
from ..errors import InputError, ProcessingError
from .tree import Path

RADIUS_ARRAY = "MaximumInscribedSphereRadius"
MIN_BRANCH_MM = 8.0  # shorter side branches are not modelled; a tree with no path this long has nothing to model
PATH_NAMES = "PathNames"  # optional field data: one vessel name per polyline


def read_vtp(path: str | FilePath) -> list[Path]:
    import vtk
    from vtk.util import numpy_support

    path = FilePath(path)
    if not path.is_file():
        raise InputError(f"centerline file not found: {path}")
    reader = vtk.vtkXMLPolyDataReader()
    reader.SetFileName(str(path))
    reader.Update()
    polydata = reader.GetOutput()
    if polydata is None or polydata.GetNumberOfCells() == 0:
        raise InputError(f"{path} holds no polylines (vmtk-style centerlines expected)")
    radius = polydata.GetPointData().GetArray(RADIUS_ARRAY)
    if radius is None:
        raise InputError(f"{path} has no point array '{RADIUS_ARRAY}' (radius in mm, vmtk/Slicer convention)")
    points = numpy_support.vtk_to_numpy(polydata.GetPoints().GetData()).astype(float)
    radii = numpy_support.vtk_to_numpy(radius).astype(float)
    names = polydata.GetFieldData().GetAbstractArray(PATH_NAMES)
    paths = []
    for cell in range(polydata.GetNumberOfCells()):
        ids = polydata.GetCell(cell).GetPointIds()
        index = [ids.GetId(k) for k in range(ids.GetNumberOfIds())]
        if len(index) < 3:
            continue
        name = names.GetValue(cell) if names is not None and cell < names.GetNumberOfValues() else f"branch_{cell + 1}"
        paths.append(Path(name, points[index], radii[index]))
    if np.any(radii <= 0):
        raise InputError(f"{path}: radii must be positive millimetres")
    return paths


def write_vtp(paths: list[Path], path: str | FilePath, arrays: dict[str, list[np.ndarray]] | None = None) -> None:
    import vtk
    from vtk.util import numpy_support

    points = vtk.vtkPoints()
    lines = vtk.vtkCellArray()
    values = {RADIUS_ARRAY: [p.radii for p in paths], **(arrays or {})}
    offset = 0
    for p in paths:
        for point in p.points:
            points.InsertNextPoint(*point)
        line = vtk.vtkPolyLine()
        line.GetPointIds().SetNumberOfIds(len(p.points))
        for k in range(len(p.points)):
            line.GetPointIds().SetId(k, offset + k)
        lines.InsertNextCell(line)
        offset += len(p.points)
    polydata = vtk.vtkPolyData()
    polydata.SetPoints(points)
    polydata.SetLines(lines)
    names = vtk.vtkStringArray()
    names.SetName(PATH_NAMES)
    for p in paths:
        names.InsertNextValue(p.name)
    polydata.GetFieldData().AddArray(names)
    for name, per_path in values.items():
        array = numpy_support.numpy_to_vtk(np.concatenate(per_path).astype(np.float64), deep=True)
        array.SetName(name)
        polydata.GetPointData().AddArray(array)
    write_polydata(polydata, path)


def lumen_surface(mask_image: sitk.Image):
    """Smoothed lumen surface in RAS millimetres."""
    import vtk
    from vtk.util import numpy_support

    array = sitk.GetArrayFromImage(mask_image).astype(np.uint8)
    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk((array > 0).astype(np.uint8).ravel(), deep=True))
    edges = vtk.vtkDiscreteFlyingEdges3D()
    edges.SetInputData(image)
    edges.SetValue(0, 1)
    smooth = vtk.vtkWindowedSincPolyDataFilter()
    smooth.SetInputConnection(edges.GetOutputPort())
    smooth.SetNumberOfIterations(30)
    smooth.SetPassBand(0.05)
    smooth.NormalizeCoordinatesOn()
    transform = vtk.vtkTransform()
    matrix = vtk.vtkMatrix4x4()
    ijk_to_ras = geometry.ijk_to_ras(mask_image)
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, ijk_to_ras[r, c])
    transform.SetMatrix(matrix)
    to_ras = vtk.vtkTransformPolyDataFilter()
    to_ras.SetInputConnection(smooth.GetOutputPort())
    to_ras.SetTransform(transform)
    to_ras.Update()
    surface = vtk.vtkPolyData()
    surface.DeepCopy(to_ras.GetOutput())  # own the data: the filters above go out of scope
    return surface


def surface_with_values(mask_image: sitk.Image, paths: list[Path], values: dict[str, list[np.ndarray]]):
    """The lumen surface with point arrays carried over from the nearest centerline point (e.g. FFR), so the
    vessel wall can be coloured by FFR."""
    from scipy.spatial import cKDTree
    from vtk.util import numpy_support

    surface = lumen_surface(crop_to_mask(mask_image))
    points = numpy_support.vtk_to_numpy(surface.GetPoints().GetData())
    _, nearest = cKDTree(np.vstack([p.points for p in paths])).query(points)
    for name, per_path in values.items():
        array = numpy_support.numpy_to_vtk(np.concatenate(per_path)[nearest].astype(np.float64), deep=True)
        array.SetName(name)
        surface.GetPointData().AddArray(array)
    return surface


def write_polydata(polydata, path: str | FilePath) -> None:
    import vtk

    writer = vtk.vtkXMLPolyDataWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(polydata)
    if not writer.Write():
        raise ProcessingError(f"could not write {path}")


def skeleton_graph(mask: np.ndarray, spacing_kji):
    """(sparse graph of the mask's voxels joined to their 26 neighbours, weighted by distance in mm; voxel coords)."""
    index = -np.ones(mask.shape, np.int64)
    coords = np.argwhere(mask)
    index[tuple(coords.T)] = np.arange(len(coords))
    rows, cols, weights = [], [], []
    for offset in np.argwhere(np.ones((3, 3, 3), bool)) - 1:
        if not offset.any():
            continue
        shifted = coords + offset
        inside = np.all((shifted >= 0) & (shifted < mask.shape), axis=1)
        target = np.full(len(coords), -1)
        target[inside] = index[tuple(shifted[inside].T)]
        ok = target >= 0
        rows.append(np.nonzero(ok)[0])
        cols.append(target[ok])
        weights.append(np.full(ok.sum(), float(np.linalg.norm(offset * spacing_kji))))
    graph = sparse.csr_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
                              shape=(len(coords), len(coords)))
    return graph, coords


def end_points(mask: np.ndarray, spacing_kji, min_branch_mm: float = MIN_BRANCH_MM) -> tuple[np.ndarray, list[np.ndarray]]:
    """(inlet, outlets) voxel indices [k, j, i] of the lumen, TEASAR-style.

    One end is the voxel geodesically farthest from the widest point; then, repeatedly, the voxel farthest from
    the part of the tree already traced (the paths dilated by 1.5 x their radius) becomes a new end when it lies
    at least `min_branch_mm` away (shorter side branches are ignored). The inlet is the widest end (the ostium).
    """
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        raise InputError("no coronary lumen found in the mask")
    sizes = np.bincount(labels.ravel())[1:]
    if count > 1 and np.sort(sizes)[-2] > 0.1 * sizes.max():
        raise InputError(f"the lumen mask is disconnected ({count} pieces); connect it or give one tree per run")
    main = labels == (int(np.argmax(sizes)) + 1)
    graph, coords = skeleton_graph(main, np.asarray(spacing_kji, float))
    depth = ndimage.distance_transform_edt(main, sampling=spacing_kji)[tuple(coords.T)]
    first = int(np.argmax(csgraph.dijkstra(graph, indices=int(np.argmax(depth)))))
    _, predecessors = csgraph.dijkstra(graph, indices=first, return_predecessors=True)
    ends, covered = [first], np.zeros(len(coords), bool)
    covered[first] = True
    while True:
        distance = csgraph.dijkstra(graph, indices=np.nonzero(covered)[0], min_only=True)
        candidate = int(np.argmax(np.where(np.isfinite(distance), distance, -1)))
        if distance[candidate] < min_branch_mm:
            break
        ends.append(candidate)
        path, node = [], candidate
        while node >= 0 and not covered[node]:
            path.append(node)
            node = predecessors[node]
        reach = csgraph.dijkstra(graph, indices=path, min_only=True, limit=1.5 * float(depth[path].max()) + 0.5)
        covered |= np.isfinite(reach)
    widths = []
    for end in ends:
        near = csgraph.dijkstra(graph, indices=end, limit=2.0)
        widths.append(float(depth[np.isfinite(near)].mean()))
    inlet = ends.pop(int(np.argmax(widths)))
    return coords[inlet], [coords[e] for e in ends]


def crop_to_mask(mask_image: sitk.Image, margin_voxels: int = 3) -> sitk.Image:
    """The mask cut to its bounding box plus a margin (same physical geometry), so that distance maps and graphs
    cost what the vessel needs, not what the scan's field of view holds."""
    mask = sitk.GetArrayViewFromImage(mask_image) > 0
    if not mask.any():
        return mask_image
    index = np.argwhere(mask)
    lo = np.maximum(index.min(0) - margin_voxels, 0)
    hi = np.minimum(index.max(0) + margin_voxels + 1, mask.shape)
    return sitk.RegionOfInterest(mask_image, [int(v) for v in (hi - lo)[::-1]], [int(v) for v in lo[::-1]])


def from_lumen_mask(mask_image: sitk.Image, inlet_ras=None, outlets_ras=None) -> list[Path]:
    """vmtk centerlines from the inlet (given, or the widest end) to every outlet (given, e.g. the user's seeds, or
    found TEASAR-style), with equal-area section radii."""
    from vmtk import vmtkscripts

    mask_image = crop_to_mask(mask_image)
    mask = sitk.GetArrayFromImage(mask_image) > 0
    spacing_kji = np.array(mask_image.GetSpacing()[::-1])
    ijk_to_ras = geometry.ijk_to_ras(mask_image)

    def ras(kji):
        return (ijk_to_ras @ [kji[2], kji[1], kji[0], 1.0])[:3]

    if outlets_ras is not None:
        if not mask.any():
            raise InputError("no coronary lumen found in the mask")
        inlet, targets = None, [np.asarray(p, float) for p in outlets_ras]
    else:
        inlet, outlets = end_points(mask, spacing_kji)
        if not outlets:
            raise InputError(f"the lumen has no branch of {MIN_BRANCH_MM:g} mm or more: nothing to compute FFR along")
        targets = [ras(kji) for kji in outlets]
    source = np.asarray(inlet_ras, float) if inlet_ras is not None else ras(inlet)
    surface = lumen_surface(mask_image)
    # vmtk's scripts write their progress ("Cleaning surface...") to the stdout of the moment they are made; it
    # would mix with the summary and the PROGRESS lines the Slicer panel reads, so it is kept out of stdout.
    with contextlib.redirect_stdout(io.StringIO()), _vtk_messages_hidden():
        extractor = vmtkscripts.vmtkCenterlines()
        extractor.Surface = surface
        extractor.SeedSelectorName = "pointlist"
        extractor.SourcePoints = [float(v) for v in source]
        extractor.TargetPoints = [float(v) for point in targets for v in point]
        extractor.AppendEndPoints = 1
        extractor.Resampling = 1
        extractor.ResamplingStepLength = 0.5
        extractor.Execute()
    from vtk.util import numpy_support

    centerlines = extractor.Centerlines
    points = numpy_support.vtk_to_numpy(centerlines.GetPoints().GetData()).astype(float)
    inscribed = numpy_support.vtk_to_numpy(centerlines.GetPointData().GetArray(RADIUS_ARRAY)).astype(float)
    traced = []
    for cell in range(centerlines.GetNumberOfCells()):
        ids = centerlines.GetCell(cell).GetPointIds()
        index = [ids.GetId(k) for k in range(ids.GetNumberOfIds())]
        if len(index) >= 3:
            traced.append(Path(f"branch_{cell + 1}", points[index], inscribed[index]))
    if not traced:
        raise InputError("vmtk could not trace any centerline from the ostium through this lumen (check the lumen "
                         "segmentation near the ostium, or give seed points)")
    # vmtk's steepest descent can fail on a narrow or kinked lumen ("target not reached") and return a piece that
    # does not start where the others do (the inlet): such a piece cannot enter the flow model and is left out.
    starts = np.array([p.points[0] for p in traced])
    inlet = starts[int(np.argmin(np.linalg.norm(starts[:, None] - starts[None], axis=2).sum(1)))]
    paths = [p for p in traced if np.linalg.norm(p.points[0] - inlet) <= 1.0]
    paths = [Path(p.name, p.points, section_radii(mask_image, p)) for p in paths]
    # The paths share their inlet: cut it by the same number of points everywhere so they still start together.
    spans = [end_cap_span(p) for p in paths]
    shortest = min(len(p.points) for p in paths)
    shared = next((k for k in range(shortest) if any(np.linalg.norm(p.points[k] - paths[0].points[k]) > 0.3
                                                     for p in paths)), shortest)
    first = min(max(a for a, _ in spans), max(shared - 1, 0))
    kept = [Path(p.name, p.points[first:b + 1], p.radii[first:b + 1]) for p, (_, b) in zip(paths, spans, strict=True)
            if b - first >= 2]
    # vmtk can stop short of every target and return a stub at the inlet (0.5 mm on a pulmonary CTA's tree): an FFR
    # along it is no vessel's.
    if not any(p.arc_length()[-1] >= MIN_BRANCH_MM for p in kept):
        raise InputError(f"vmtk traced no path of {MIN_BRANCH_MM:g} mm or more from the ostium through this lumen (check "
                         "the lumen segmentation near the ostium, or give seed points)")
    return kept


@contextlib.contextmanager
def _vtk_messages_hidden():
    """vmtk's tracer reports a target it cannot reach as VTK errors on stderr ("Seed id invalid", "Target not
    reached"), lines between the command's own; the outcome is judged from the paths it returns, and said once."""
    import vtk

    shown = vtk.vtkObject.GetGlobalWarningDisplay()
    vtk.vtkObject.GlobalWarningDisplayOff()
    try:
        yield
    finally:
        vtk.vtkObject.SetGlobalWarningDisplay(shown)


def end_cap_span(path: Path, ratio: float = 0.75, window: int = 8) -> tuple[int, int]:
    """(first, last) index of the points to keep: end points where the centerline runs into the rounded end of the
    lumen (radius collapsing towards 0) or repeats a point are not vessel, and their tiny radii would dominate the
    resistance."""
    points, radii = path.points, path.radii
    keep = np.ones(len(points), bool)
    for direction in (1, -1):
        indices = list(range(len(points)))[::direction]
        for position, index in enumerate(indices[: len(points) // 4]):
            inner = radii[indices[position + 1: position + 1 + window]]
            duplicate = np.linalg.norm(points[index] - points[indices[position + 1]]) < 1e-6
            if duplicate or radii[index] < ratio * np.median(inner):
                keep[index] = False
            else:
                break
    # Both ends run into rounded caps (the outlet's lumen end; the inlet sphere at the ostium): drop what lies
    # within one local radius of either end.
    s = Path(path.name, points[keep], radii[keep]).arc_length()
    kept_radii = radii[keep]
    tail = np.zeros(len(s), bool)
    for end_mask, distance in ((s >= s[-1] - 4.0, s[-1] - s), (s <= 4.0, s)):
        cap = float(np.median(kept_radii[end_mask]))
        tail |= distance < cap
    quarter = len(s) // 4
    tail[quarter:len(s) - quarter] = False
    kept = np.nonzero(keep)[0][~tail]  # a contiguous run: points are only dropped from the two ends
    return int(kept[0]), int(kept[-1])


def section_radii(mask_image: sitk.Image, path: Path, step_mm: float = 0.1) -> np.ndarray:
    """Equal-area radius of the lumen cross-section at every centerline point.

    The mask is sampled (trilinear, threshold 0.5) on a plane normal to the centerline; the connected piece around
    the point gives the area. The radius of the equal-area circle follows the lumen better than the maximum
    inscribed sphere, which sits inside the voxelised surface (and r^4 makes that matter). Where the plane cuts a
    junction (area > 1.5^2 x the sphere's) or the section is cut by the image edge, the sphere radius is kept.
    """
    mask = geometry.float_array(mask_image)
    ras_to_ijk = np.linalg.inv(geometry.ijk_to_ras(mask_image))
    ahead = np.r_[path.points[2:], np.repeat(path.points[-1:], 2, axis=0)]
    behind = np.r_[np.repeat(path.points[:1], 2, axis=0), path.points[:-2]]
    tangents = ahead - behind  # over +-2 points: end points may be repeated
    lengths = np.linalg.norm(tangents, axis=1)
    radii = path.radii.copy()
    for n, (point, tangent, sphere) in enumerate(zip(path.points, tangents, path.radii, strict=True)):
        if lengths[n] < 1e-6:
            continue
        tangent = tangent / lengths[n]
        u = np.cross(tangent, [1.0, 0.0, 0.0] if abs(tangent[0]) < 0.9 else [0.0, 1.0, 0.0])
        u /= np.linalg.norm(u)
        v = np.cross(tangent, u)
        half = 2.5 * sphere + 1.0
        offsets = np.arange(-half, half + 1e-9, step_mm)
        a, b = np.meshgrid(offsets, offsets, indexing="ij")
        plane = point + a[..., None] * u + b[..., None] * v
        ijk = plane.reshape(-1, 3) @ ras_to_ijk[:3, :3].T + ras_to_ijk[:3, 3]
        values = ndimage.map_coordinates(mask, ijk[:, ::-1].T, order=1, cval=-1.0).reshape(a.shape)
        if (values < 0).any():
            continue  # the plane leaves the image
        pieces, _ = ndimage.label(values >= 0.5)
        centre = pieces[len(offsets) // 2, len(offsets) // 2]
        if centre == 0:
            continue
        region = pieces == centre
        if region[0].any() or region[-1].any() or region[:, 0].any() or region[:, -1].any():
            continue  # the section runs off the sampled plane: a junction or a vessel along the plane
        equivalent = np.sqrt(region.sum() * step_mm ** 2 / np.pi)
        if equivalent <= 1.5 * sphere:
            radii[n] = equivalent
    return radii
