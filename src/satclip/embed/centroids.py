"""Centroids of (multi)polygons given in longitude/latitude degrees, taken on the sphere.

A planar centroid of lon/lat coordinates, even in an equal-area projection such as EPSG:6933, cuts the globe at
the antimeridian and flattens the poles: Fiji (parts at 177…180° and −180…−179°) came out at 89° E, Chukotka in the
Norwegian Sea, a polar cap at 83° instead of the pole. Here the centroid is the direction of the area-weighted
mean of the surface's unit vectors, ∬ r̂ dA / |∬ r̂ dA|, which is the same whatever the parts' longitudes and
agrees with a planar equal-area centroid for a small polygon away from the poles.

The integrals are taken over the polygon in the equal-area plane (λ, z = sin φ), where dA = dλ dz, by Green's
theorem as sums over its rings' edges (densified to :data:`SEGMENT_DEGREES` first): with F(λ, z) any function
whose λ-derivative is the integrand, ∬ f dλ dz = ∮ F dz along a counter-clockwise ring.
"""

from __future__ import annotations

import numpy as np

#: edges are split into pieces no longer than this (degrees) before the integrals, which treat each piece as
#: straight in (λ, sin φ)
SEGMENT_DEGREES = 0.25


def sphere_centroids(polygons) -> np.ndarray:
    """``(N, 2)`` float64 (lon, lat) degrees: the centroid on the sphere of each Polygon or MultiPolygon in the
    array ``polygons`` (shapely geometries in lon/lat degrees; holes subtract). NaN for an empty geometry, and
    where the mean direction vanishes (a surface symmetric about the centre: the whole globe)."""
    import shapely

    polygons = np.asarray(polygons, dtype=object)
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
    x, y, zm = moments[:, 1], moments[:, 2], moments[:, 3]
    length = np.sqrt(x**2 + y**2 + zm**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        degenerate = ~(length > 1e-12 * np.maximum(np.abs(moments[:, 0]), 1e-300))
    lon, lat = np.degrees(np.arctan2(y, x)), np.degrees(np.arctan2(zm, np.hypot(x, y)))
    lon[degenerate], lat[degenerate] = np.nan, np.nan
    return np.column_stack([lon, lat])
