"""Centroids of geometries given in longitude/latitude degrees, taken on the sphere.

A planar centroid of lon/lat coordinates, even in an equal-area projection such as EPSG:6933, cuts the globe at
the antimeridian and flattens the poles: Fiji (parts at 177…180° and −180…−179°) came out at 89° E, Chukotka in the
Norwegian Sea, a polar cap at 83° instead of the pole. Here the centroid is the direction of the area-weighted
mean of the surface's unit vectors, ∬ r̂ dA / |∬ r̂ dA|, which is the same whatever the parts' longitudes and
agrees with a planar equal-area centroid for a small polygon away from the poles.

The integrals are taken over the polygon in the equal-area plane (λ, z = sin φ), where dA = dλ dz, by Green's
theorem as sums over its rings' edges (densified to :data:`SEGMENT_DEGREES` first): with F(λ, z) any function
whose λ-derivative is the integrand, ∬ f dλ dz = ∮ F dz along a counter-clockwise ring.

Lines are weighted by length, ∫ r̂ ds over their pieces (each taken as a great-circle arc: (a + b) tan(θ/2) for
end points a, b an angle θ apart), and points equally, Σ r̂: a LineString along 89° N from 0° to 180° came out at
89° N instead of nearer the pole, a MultiPoint at 179° E and 179° W at 0° instead of 180°.
"""

from __future__ import annotations

import numpy as np

#: edges are split into pieces no longer than this (degrees) before the integrals, which treat each piece as
#: straight in (λ, sin φ)
SEGMENT_DEGREES = 0.25


#: the geometry types :func:`sphere_centroids` takes, by what weighs their unit vectors
SURFACES, LINES, POINTS = ("Polygon", "MultiPolygon"), ("LineString", "LinearRing", "MultiLineString"), ("MultiPoint",)


def sphere_centroids(geometries) -> np.ndarray:
    """``(N, 2)`` float64 (lon, lat) degrees: the centroid on the sphere of each geometry in the array
    ``geometries`` (shapely, in lon/lat degrees): a Polygon's or MultiPolygon's by area (holes subtract), a
    (Multi)LineString's by length, a MultiPoint's points equally (of :data:`SURFACES`, :data:`LINES`,
    :data:`POINTS`). NaN for an empty geometry, and where the mean direction vanishes (a shape symmetric about the
    centre: the whole globe, two antipodal points)."""
    import shapely

    geometries = np.asarray(geometries, dtype=object)
    kinds = shapely.get_type_id(geometries)
    moments = np.zeros((len(geometries), 4))  # (weight: area, length or count; then the sum of r̂ so weighed)
    for kind, weigh in ((SURFACES, _area_moments), (LINES, _length_moments), (POINTS, _count_moments)):
        rows = np.isin(kinds, [shapely.GeometryType[name.upper()] for name in kind])
        if rows.any():
            moments[rows] = weigh(geometries[rows])
    x, y, zm = moments[:, 1], moments[:, 2], moments[:, 3]
    length = np.sqrt(x**2 + y**2 + zm**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        degenerate = ~(length > 1e-12 * np.maximum(np.abs(moments[:, 0]), 1e-300))
    lon, lat = np.degrees(np.arctan2(y, x)), np.degrees(np.arctan2(zm, np.hypot(x, y)))
    lon[degenerate], lat[degenerate] = np.nan, np.nan
    return np.column_stack([lon, lat])


def _unit_vectors(coords: np.ndarray) -> np.ndarray:
    """``(N, 3)`` unit vectors of ``(N, 2)`` (lon, lat) degrees."""
    lam, phi = np.radians(coords[:, 0]), np.radians(coords[:, 1])
    return np.column_stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])


def _count_moments(multipoints: np.ndarray) -> np.ndarray:
    """``(N, 4)``: each geometry's number of points and the sum of their unit vectors."""
    import shapely

    coords, coord_of = shapely.get_coordinates(multipoints, return_index=True)
    moments = np.zeros((len(multipoints), 4))
    np.add.at(moments, coord_of, np.column_stack([np.ones(len(coords)), _unit_vectors(coords)]))
    return moments


def _length_moments(lines: np.ndarray) -> np.ndarray:
    """``(N, 4)``: each geometry's length on the unit sphere and ∫ r̂ ds along it (a line of length 0: its points
    counted)."""
    import shapely

    parts, part_of = shapely.get_parts(lines, return_index=True)
    drawn = shapely.length(parts) > 0  # (segmentize refuses a part of one point repeated; it adds no length)
    parts, part_of = shapely.segmentize(parts[drawn], SEGMENT_DEGREES), part_of[drawn]
    coords, coord_of = shapely.get_coordinates(parts, return_index=True)
    vectors = _unit_vectors(coords)
    edge = coord_of[1:] == coord_of[:-1]  # consecutive vertices of one part
    a, b = vectors[:-1][edge], vectors[1:][edge]
    half = np.arctan2(np.linalg.norm(np.cross(a, b), axis=1), np.einsum("ij,ij->i", a, b)) / 2  # θ/2 of each piece
    terms = np.column_stack([2 * half, (a + b) * np.tan(half)[:, None]])  # (θ, ∫ r̂ ds along the arc)
    moments = np.zeros((len(lines), 4))
    np.add.at(moments, part_of[coord_of[:-1][edge]], terms)
    point = moments[:, 0] == 0  # (a line of one point repeated: that point, as shapely's centroid is)
    moments[point] = _count_moments(lines[point])
    return moments


def _area_moments(polygons: np.ndarray) -> np.ndarray:
    """``(N, 4)``: each geometry's area in (λ, sin φ) and ∬ r̂ dA over it."""
    import shapely

    parts, part_of = shapely.get_parts(shapely.segmentize(polygons, SEGMENT_DEGREES), return_index=True)
    rings, ring_of = shapely.get_rings(parts, return_index=True)
    exterior = np.r_[True, ring_of[1:] != ring_of[:-1]] if len(rings) else np.zeros(0, dtype=bool)
    coords, coord_of = shapely.get_coordinates(rings, return_index=True)
    lam, z = np.radians(coords[:, 0]), np.sin(np.radians(coords[:, 1]))
    edge = coord_of[1:] == coord_of[:-1]  # consecutive vertices of one ring
    dz = (z[1:] - z[:-1])[edge]

    def potentials(lam, z):  # F = λ (area), √(1−z²) sin λ (x), −√(1−z²) cos λ (y), λ z (z): dA's and r̂ dA's
        across = np.sqrt(np.clip(1 - z**2, 0, None))  # cos φ
        return np.stack([lam, across * np.sin(lam), -across * np.cos(lam), lam * z])

    start, end = potentials(lam[:-1][edge], z[:-1][edge]), potentials(lam[1:][edge], z[1:][edge])
    middle = potentials((lam[:-1] + lam[1:])[edge] / 2, (z[:-1] + z[1:])[edge] / 2)
    terms = (start + 4 * middle + end) / 6 * dz  # ∮ F dz along each piece, by Simpson's rule
    per_ring = np.zeros((len(rings), 4))
    np.add.at(per_ring, coord_of[:-1][edge], terms.T)
    # orient each ring: an exterior's area counts positive, a hole's negative, whichever way it is wound
    per_ring *= (np.sign(per_ring[:, 0]) * np.where(exterior, 1.0, -1.0))[:, None]
    moments = np.zeros((len(polygons), 4))
    np.add.at(moments, part_of[ring_of], per_ring)
    return moments
